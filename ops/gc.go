package ops

import (
	"io/fs"
	"path"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// onebox's garbage collector defaults, for when the environment sets
// neither GOGC nor GOMEMLIMIT (the runtime applies those itself).
//
// The live heap of a request-serving onebox is small (a few MB plus the
// cache), so at the runtime's GOGC=100 it collected about 35 times a
// second under load and spent a tenth of the server's CPU doing so. At
// 400 the heap may grow to five times what is live before a collection,
// and the soft memory limit keeps that bounded: near it the collector
// runs as often as it must, whatever GOGC says. GOGC=100 GOMEMLIMIT=off
// restores the runtime's own behaviour. In a cgroup (a container, a
// systemd unit with MemoryMax) allowed less, the limit is three quarters
// of what it allows, so the collector works harder before the kernel's
// OOM killer steps in.
const (
	DefaultGCPercent   = 400
	DefaultMemoryLimit = 512 << 20
)

// GCSettings are the collector's effective settings.
type GCSettings struct {
	GCPercent   int   // GOGC; -1 is off
	MemoryLimit int64 // bytes; math.MaxInt64 is none
}

// TuneGC applies the defaults above where lookupEnv finds no GOGC or
// GOMEMLIMIT, and returns the settings in effect. memoryMax is what the
// process may use (CgroupMemoryMax), 0 if unknown.
func TuneGC(lookupEnv func(string) (string, bool), memoryMax int64) GCSettings {
	if _, ok := lookupEnv("GOGC"); !ok {
		debug.SetGCPercent(DefaultGCPercent)
	}
	if _, ok := lookupEnv("GOMEMLIMIT"); !ok {
		limit := int64(DefaultMemoryLimit)
		if memoryMax > 0 {
			limit = min(limit, memoryMax/4*3)
		}
		debug.SetMemoryLimit(limit)
	}
	return CurrentGC()
}

// CgroupMemoryMax returns the memory limit of this process's cgroup, read
// from root (the file system root, os.DirFS("/")): cgroup v2's
// memory.max, else v1's memory.limit_in_bytes. 0 when there is none.
func CgroupMemoryMax(root fs.FS) int64 {
	b, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		// "0::/path" (v2) or "4:memory:/path" (v1)
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			file = path.Join("sys/fs/cgroup", parts[2], "memory.max")
		case parts[1] == "memory":
			file = path.Join("sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")
		default:
			continue
		}
		v, err := fs.ReadFile(root, file)
		if err != nil {
			continue
		}
		// "max" (v2) or a huge number (v1) means no limit.
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err == nil && n > 0 && n < 1<<50 {
			return n
		}
	}
	return 0
}

// CurrentGC reads the collector's settings from runtime/metrics.
func CurrentGC() GCSettings {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	return GCSettings{GCPercent: int(s[0].Value.Uint64()), MemoryLimit: int64(s[1].Value.Uint64())}
}
