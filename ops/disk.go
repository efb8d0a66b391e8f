package ops

import (
	"context"
	"fmt"
)

// Disk is the space of the file system holding a directory.
type Disk struct {
	Free uint64 // bytes an unprivileged process may still write
	Size uint64 // bytes in all
}

// DiskUsage returns the space of the file system that holds dir (one
// statfs call: cheap enough for every readiness probe).
func DiskUsage(dir string) (Disk, error) { return diskUsage(dir) }

// DiskCheck is a readiness check that fails when the file system of dir
// has less than minFree (a fraction, such as 0.01) of its space left: a
// full disk fails every write, and SQLite's WAL cannot checkpoint.
func DiskCheck(dir string, minFree float64) Check {
	return Check{Name: "disk", Probe: func(context.Context) error {
		d, err := DiskUsage(dir)
		if err != nil {
			return err
		}
		if d.Size > 0 && float64(d.Free) < minFree*float64(d.Size) {
			return fmt.Errorf("%s: %d of %d bytes free, under %.1f%%", dir, d.Free, d.Size, minFree*100)
		}
		return nil
	}}
}
