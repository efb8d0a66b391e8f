//go:build linux

package sqlite

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileLocks reads /proc/locks, never the file itself: POSIX locks belong
// to a process, and closing any descriptor of a file drops every lock
// the process holds on it, SQLite's included. So no descriptor of the
// -shm is opened here.
func fileLocks(shm string) ([]FileLock, error) {
	fi, err := os.Stat(shm)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: file locks: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, nil
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil, fmt.Errorf("sqlite: file locks: %w", err)
	}
	defer f.Close()
	self := os.Getpid()
	ino := ":" + strconv.FormatUint(st.Ino, 10)
	var out []FileLock
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[1] != "POSIX" || !strings.HasSuffix(fields[5], ino) {
			continue
		}
		pid, err1 := strconv.Atoi(fields[4])
		start, err2 := strconv.ParseInt(fields[6], 10, 64)
		end, err3 := strconv.ParseInt(fields[7], 10, 64)
		if fields[7] == "EOF" {
			end, err3 = 1<<62, nil
		}
		if err1 != nil || err2 != nil || err3 != nil || pid == self || !sameDevice(fields[5], st.Dev) {
			continue
		}
		for i, name := range walLockSlots {
			if b := walLockOffset + int64(i); b >= start && b <= end {
				out = append(out, FileLock{Lock: name, Exclusive: fields[3] == "WRITE", PID: pid, Process: processName(pid)})
			}
		}
	}
	return out, sc.Err()
}

// sameDevice reports whether /proc/locks' MAJOR:MINOR:INODE field names
// dev (hex major and minor, as the kernel prints them).
func sameDevice(field string, dev uint64) bool {
	parts := strings.Split(field, ":")
	if len(parts) != 3 {
		return false
	}
	major, err1 := strconv.ParseUint(parts[0], 16, 32)
	minor, err2 := strconv.ParseUint(parts[1], 16, 32)
	if err1 != nil || err2 != nil {
		return false
	}
	return uint32(major) == unix.Major(dev) && uint32(minor) == unix.Minor(dev)
}

// processName is a pid's command name.
func processName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
