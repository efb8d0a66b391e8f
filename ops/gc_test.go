package ops_test

import (
	"math"
	"runtime/debug"
	"testing"

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
		name string
		env  map[string]string
		set  ops.GCSettings // applied before TuneGC, as the runtime would from env
		want ops.GCSettings
	}{
		{"defaults", nil, ops.GCSettings{GCPercent: 100, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: ops.DefaultGCPercent, MemoryLimit: ops.DefaultMemoryLimit}},
		{"GOGC kept", map[string]string{"GOGC": "150"}, ops.GCSettings{GCPercent: 150, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: 150, MemoryLimit: ops.DefaultMemoryLimit}},
		{"GOMEMLIMIT kept", map[string]string{"GOMEMLIMIT": "off"}, ops.GCSettings{GCPercent: 100, MemoryLimit: math.MaxInt64},
			ops.GCSettings{GCPercent: ops.DefaultGCPercent, MemoryLimit: math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(tt.set.GCPercent)
			debug.SetMemoryLimit(tt.set.MemoryLimit)
			got := ops.TuneGC(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if got != tt.want || ops.CurrentGC() != tt.want {
				t.Fatalf("TuneGC = %+v (current %+v), want %+v", got, ops.CurrentGC(), tt.want)
			}
		})
	}
}
