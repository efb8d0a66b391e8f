package advise_test

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"onebox/ops/advise"
)

// quiet is an instance on SQLite with nothing to scale: every verdict no.
func quiet() advise.Measurements {
	return advise.Measurements{
		Window: time.Minute, Backend: "sqlite",
		CacheHits: 900, CacheMisses: 100, CacheLoadMean: 0.002,
		QueryTime: 0.2, WriterBusy: 0.1, WriterWait: 0.01,
		OldestAge: 1, OldestAgeBefore: 2, InFlight: 1, Workers: 4, JobsPerSecond: 5, CPU: 0.3,
		Limiter: []advise.Policy{{Name: "api", Checks: 10000, Rejected: 3, TopKeys: []advise.KeyCount{{Key: "10.0.0.1", Rejected: 3}}}},
	}
}

func TestAdvise(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*advise.Measurements)
		want   map[string]advise.Answer // steps not listed: as quiet's
		says   []string                 // in the changed verdicts' text
	}{
		{"quiet", func(*advise.Measurements) {}, nil, []string{"90% of lookups hit", "saving the database 30.0ms"}},
		{"cache misses", func(m *advise.Measurements) { m.CacheHits, m.CacheMisses = 400, 600 },
			map[string]advise.Answer{advise.StepCache: advise.No}, []string{"only 40% of lookups hit"}},
		{"cache at the threshold", func(m *advise.Measurements) { m.CacheHits, m.CacheMisses = 500, 500 },
			map[string]advise.Answer{advise.StepCache: advise.Yes}, nil},
		{"no cache", func(m *advise.Measurements) { m.CacheHits, m.CacheMisses = 0, 0 },
			map[string]advise.Answer{advise.StepCache: advise.Unknown}, nil},
		{"writer busy", func(m *advise.Measurements) { m.WriterBusy = 0.75 },
			map[string]advise.Answer{advise.StepPostgres: advise.Yes}, []string{"busy 75% of the time"}},
		{"writer just under", func(m *advise.Measurements) { m.WriterBusy = 0.69 }, nil, nil},
		{"writes wait", func(m *advise.Measurements) { m.WriterWait = 0.6 },
			map[string]advise.Answer{advise.StepPostgres: advise.Yes}, []string{"wait 600.0ms a second"}},
		{"lock timeouts", func(m *advise.Measurements) { m.BusyErrors = 2 },
			map[string]advise.Answer{advise.StepPostgres: advise.Yes}, []string{"2 lock timeouts"}},
		{"writer not exposed", func(m *advise.Measurements) { m.WriterBusy = math.NaN() },
			map[string]advise.Answer{advise.StepPostgres: advise.Unknown}, nil},
		{"on postgres, primary busy", func(m *advise.Measurements) { m.Backend, m.QueryTime = "postgres", 1.8 },
			map[string]advise.Answer{advise.StepPostgres: advise.No, advise.StepReplicas: advise.Yes},
			[]string{"already on PostgreSQL", "1.80 connections of the primary"}},
		{"on postgres, primary idle", func(m *advise.Measurements) { m.Backend, m.QueryTime = "postgres", 0.4 },
			map[string]advise.Answer{advise.StepPostgres: advise.No, advise.StepReplicas: advise.No}, []string{"the primary keeps up"}},
		{"queue grows, workers saturated, CPU free", func(m *advise.Measurements) {
			m.OldestAge, m.OldestAgeBefore, m.OldestGrowing, m.InFlight = 40, 5, true, 4
		}, map[string]advise.Answer{advise.StepWorkers: advise.Yes, advise.StepWorkerRole: advise.No},
			[]string{"went from 5.0s to 40.0s while 100% of the workers ran", "raise the workers here first"}},
		{"queue grows, workers saturated, CPU spent", func(m *advise.Measurements) {
			m.OldestAge, m.OldestAgeBefore, m.OldestGrowing, m.InFlight, m.CPU = 40, 5, true, 4, 0.9
		}, map[string]advise.Answer{advise.StepWorkers: advise.Yes, advise.StepWorkerRole: advise.Yes},
			[]string{"uses 90% of the cores"}},
		{"queue grows, workers idle", func(m *advise.Measurements) { m.OldestAge, m.OldestGrowing, m.InFlight = 40, true, 1 },
			map[string]advise.Answer{advise.StepWorkers: advise.No}, []string{"look at the jobs"}},
		{"workers all busy, queue not growing", func(m *advise.Measurements) { m.InFlight = 4 },
			map[string]advise.Answer{advise.StepWorkers: advise.No}, []string{"is not getting older"}},
		{"no workers here", func(m *advise.Measurements) { m.Workers = 0 },
			map[string]advise.Answer{advise.StepWorkers: advise.Unknown, advise.StepWorkerRole: advise.Unknown}, nil},
		{"queue near sqlite capacity", func(m *advise.Measurements) { m.JobsPerSecond = 2400 },
			map[string]advise.Answer{advise.StepBroker: advise.Yes}, []string{"53% of what the queue on sqlite streamed"}},
		{"same rate on postgres is past it", func(m *advise.Measurements) { m.Backend, m.JobsPerSecond = "postgres", 400 },
			map[string]advise.Answer{advise.StepPostgres: advise.No, advise.StepBroker: advise.Yes}, nil},
		{"one abusive client", func(m *advise.Measurements) {
			m.Limiter[0] = advise.Policy{Name: "login", Checks: 1000, Rejected: 200, TopKeys: []advise.KeyCount{{Key: "203.0.113.9", Rejected: 150}, {Key: "10.0.0.2", Rejected: 5}}}
		}, map[string]advise.Answer{advise.StepLimiter: advise.Yes}, []string{"203.0.113.9 has 75% of the rejections", "keep the limit"}},
		{"limits too tight", func(m *advise.Measurements) {
			m.Limiter[0] = advise.Policy{Name: "api", Checks: 1000, Rejected: 200, TopKeys: []advise.KeyCount{{Key: "10.0.0.1", Rejected: 20}, {Key: "10.0.0.2", Rejected: 19}}}
		}, map[string]advise.Answer{advise.StepLimiter: advise.Yes}, []string{"api: 20% rejected, no key over 50%", "raise it"}},
		{"no limiter traffic", func(m *advise.Measurements) { m.Limiter = nil },
			map[string]advise.Answer{advise.StepLimiter: advise.Unknown}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := quiet()
			m.Limiter = append([]advise.Policy(nil), m.Limiter...)
			tt.change(&m)
			got := advise.Advise(m, advise.Thresholds{})
			var text bytes.Buffer
			if err := (advise.Advice{At: time.Now(), Window: "1m", Verdicts: got}).WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for _, v := range got {
				want, ok := tt.want[v.Step]
				if !ok {
					want = advise.No
					if v.Step == advise.StepCache {
						want = advise.Yes
					}
				}
				if v.Answer != want {
					t.Errorf("%s: %s (%s), want %s", v.Step, v.Answer, v.Because, want)
				}
				if v.Threshold == "" || v.Because == "" {
					t.Errorf("%s: no threshold or no reason: %+v", v.Step, v)
				}
			}
			for _, s := range tt.says {
				if !strings.Contains(text.String(), s) {
					t.Errorf("the advice does not say %q:\n%s", s, text.String())
				}
			}
		})
	}
}

// TestThresholds: a threshold given replaces its default.
func TestThresholds(t *testing.T) {
	t.Parallel()
	m := quiet()
	m.CacheHits, m.CacheMisses = 800, 200
	v := advise.Advise(m, advise.Thresholds{CacheHitRatio: 0.85})[0]
	if v.Step != advise.StepCache || v.Answer != advise.No || !strings.Contains(v.Threshold, "85%") {
		t.Fatalf("%+v", v)
	}
}
