package ops

import (
	"runtime/debug"
	"runtime/metrics"
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
// restores the runtime's own behaviour.
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
// GOMEMLIMIT, and returns the settings in effect.
func TuneGC(lookupEnv func(string) (string, bool)) GCSettings {
	if _, ok := lookupEnv("GOGC"); !ok {
		debug.SetGCPercent(DefaultGCPercent)
	}
	if _, ok := lookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
	return CurrentGC()
}

// CurrentGC reads the collector's settings from runtime/metrics.
func CurrentGC() GCSettings {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	return GCSettings{GCPercent: int(s[0].Value.Uint64()), MemoryLimit: int64(s[1].Value.Uint64())}
}
