//go:build !unix

package ops

import "errors"

func diskUsage(string) (Disk, error) {
	return Disk{}, errors.New("disk usage: not supported on this system")
}
