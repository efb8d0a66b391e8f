//go:build unix

package ops

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func diskUsage(dir string) (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Disk{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bsize := uint64(st.Bsize) // int64 on Linux, uint32 elsewhere
	return Disk{Free: uint64(st.Bavail) * bsize, Size: uint64(st.Blocks) * bsize}, nil
}
