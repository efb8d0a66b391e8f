package local

import "os"

// SetFsync makes s call fsync, instead of (*os.File).Sync, for every
// fsync of a file or directory, so that a test can count them.
func SetFsync(s *Storage, fsync func(*os.File) error) { s.fsync = fsync }
