package ops_test

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"

	"onebox/ops"
)

// Not parallel: the collector's settings are the process's.
func TestTuneGC(t *testing.T) {
	before := ops.CurrentGC()
	t.Cleanup(func() {
		debug.SetGCPercent(before.GCPercent)
		debug.SetMemoryLimit(before.MemoryLimit)
	})
	tests := []struct {
		name      string
		env       map[string]string
		memoryMax int64
		set       ops.GCSettings // applied before TuneGC, as the runtime would from env
		want      ops.GCSettings
	}{
		{"defaults", nil, 0, ops.GCSettings{GCPercent: 100, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: ops.DefaultGCPercent, MemoryLimit: ops.DefaultMemoryLimit}},
		{"GOGC kept", map[string]string{"GOGC": "150"}, 0, ops.GCSettings{GCPercent: 150, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: 150, MemoryLimit: ops.DefaultMemoryLimit}},
		{"GOMEMLIMIT kept", map[string]string{"GOMEMLIMIT": "off"}, 256 << 20, ops.GCSettings{GCPercent: 100, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: ops.DefaultGCPercent, MemoryLimit: math.MaxInt64}},
		{"small cgroup", nil, 256 << 20, ops.GCSettings{GCPercent: 100, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: ops.DefaultGCPercent, MemoryLimit: 192 << 20}},
		{"large cgroup", nil, 8 << 30, ops.GCSettings{GCPercent: 100, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: ops.DefaultGCPercent, MemoryLimit: ops.DefaultMemoryLimit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(tt.set.GCPercent)
			debug.SetMemoryLimit(tt.set.MemoryLimit)
			got := ops.TuneGC(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, tt.memoryMax)
			if got != tt.want || ops.CurrentGC() != tt.want {
				t.Fatalf("TuneGC = %+v (current %+v), want %+v", got, ops.CurrentGC(), tt.want)
			}
		})
	}
}

func TestCgroupMemoryMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fs   fstest.MapFS
		want int64
	}{
		{"v2", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("0::/system.slice/onebox.service\n")},
			"sys/fs/cgroup/system.slice/onebox.service/memory.max": {Data: []byte("268435456\n")},
		}, 256 << 20},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
		}, 0},
		{"v1", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("5:devices:/\n4:memory:/docker/abc\n0::/\n")},
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": {Data: []byte("536870912\n")},
		}, 512 << 20},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           {Data: []byte("4:memory:/\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		}, 0},
		{"no cgroup file", fstest.MapFS{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ops.CgroupMemoryMax(tt.fs); got != tt.want {
				t.Fatalf("CgroupMemoryMax = %d, want %d", got, tt.want)
			}
		})
	}
}
