//go:build linux || darwin || freebsd

package sqlite

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

func fileLocks(shm string) ([]FileLock, error) {
	f, err := os.Open(shm)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: file locks: %w", err)
	}
	defer f.Close()
	var out []FileLock
	for i, name := range walLockSlots {
		// Ask whether a write lock on the slot's byte could be had: the
		// answer is the lock in its way, with its owner's pid.
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: walLockOffset + int64(i), Len: 1}
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
			return out, fmt.Errorf("sqlite: file locks: %s: %w", name, err)
		}
		if lk.Type == syscall.F_UNLCK {
			continue
		}
		out = append(out, FileLock{Lock: name, Exclusive: lk.Type == syscall.F_WRLCK, PID: int(lk.Pid), Process: processName(int(lk.Pid))})
	}
	return out, nil
}

// processName is a pid's command name, where /proc has it.
func processName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
