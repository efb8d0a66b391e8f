package dashboard

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"onebox/ops/advise"
)

// State is everything the page shows, as /ops/api/state serves it.
// Numbers come formatted for people; the diagnosis and alerts keep their
// raw fields for machines.
type State struct {
	Updated     time.Time `json:"updated"`
	UpdatedText string    `json:"updated_text"`
	ScrapeError string    `json:"scrape_error,omitempty"`
	IntervalMS  int64     `json:"interval_ms"`
	Window      string    `json:"window"` // span of the sparklines, "1h"
	Recent      string    `json:"recent"` // span of the numbers, "1m"
	Panels      []Panel   `json:"panels"`
	// Writer is the SQLite writer panel; nil with PostgreSQL.
	Writer    *WriterView `json:"writer,omitempty"`
	Diagnosis Diagnosis   `json:"diagnosis"`
	// Advice says which scale-out steps the numbers justify now.
	Advice      advise.Advice   `json:"advice"`
	Alerts      []Alert         `json:"alerts"`    // firing now
	AlertLog    []Alert         `json:"alert_log"` // recent transitions, newest first
	Errors      []ErrorView     `json:"errors"`
	SlowQueries []SlowQueryView `json:"slow_queries"`
	Traces      []TraceView     `json:"traces"`
	Wired       map[string]bool `json:"wired"` // which of errors, slow_queries, traces, dead have a source
}

// Panel is one component of the chain.
type Panel struct {
	Name      string       `json:"name"`
	Title     string       `json:"title"`
	State     Health       `json:"state"`
	SinceText string       `json:"since_text"` // "since 12:03:04, 4m ago"
	Evidence  []string     `json:"evidence"`
	Metrics   []MetricView `json:"metrics"` // the first is the headline
	// Replicas, on the read replicas' panel, is each replica's row.
	Replicas []ReplicaView `json:"replicas,omitempty"`
}

// ReplicaView is one read replica: its lag behind the primary in WAL
// bytes and in replay time, and whether it serves reads.
type ReplicaView struct {
	Name       string `json:"name"`
	InRotation bool   `json:"in_rotation"`
	LagBytes   string `json:"lag_bytes"`
	LagSeconds string `json:"lag_seconds"`
}

// MetricView is one number with its sparkline.
type MetricView struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	Value string `json:"value"`
	// Source, for a quantile, says what it was computed from and over
	// which window.
	Source string `json:"source,omitempty"`
	Spark  string `json:"spark"` // SVG path in a viewBox of sparkWidth × sparkHeight
}

type ErrorView struct {
	Time      string `json:"time"`
	Where     string `json:"where"`
	Status    int    `json:"status,omitempty"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// SlowQueryView is one query name of the slow-query log: how many of
// its runs were kept, their p95 and max, and the slowest one's SQL,
// plan and request. The list is ranked by time spent (the sum of the
// kept runs), the cost an operator can win back.
type SlowQueryView struct {
	Time      string `json:"time"` // of the newest run
	Name      string `json:"name"`
	Count     int    `json:"count"`
	P95       string `json:"p95"`
	Max       string `json:"max"`
	Total     string `json:"total"`
	SQL       string `json:"sql"`
	Plan      string `json:"plan,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

type TraceView struct {
	Name      string     `json:"name"`
	Time      string     `json:"time"`
	Duration  string     `json:"duration"`
	RequestID string     `json:"request_id,omitempty"`
	Spans     []SpanView `json:"spans"`
}

// SpanView places a span on its trace's time axis, in percent.
type SpanView struct {
	Name     string  `json:"name"`
	Duration string  `json:"duration"`
	Depth    int     `json:"depth"`
	Offset   float64 `json:"offset"`
	Width    float64 `json:"width"`
	Error    string  `json:"error,omitempty"`
}

const listLimit = 20

func (d *Dashboard) buildState(judged []judging, src sources, now time.Time) State {
	s := State{
		Updated: now, UpdatedText: clock(now),
		IntervalMS: d.o.Interval.Milliseconds(), Window: dur(d.o.Window), Recent: dur(d.o.Recent),
		Diagnosis: d.diagnose(judged, src.drills, now),
		Alerts:    d.alerts.firing(), AlertLog: slices.Clone(d.alerts.recent),
		Wired: map[string]bool{
			"errors": d.o.RecentErrors != nil, "slow_queries": d.o.SlowQueries != nil, "traces": d.o.SlowTraces != nil,
			"dead": d.o.Dead != nil,
		},
	}
	for _, n := range graph {
		if n.optional && !d.hist.current.has[n.name] {
			continue
		}
		p := Panel{Name: n.name, Title: n.title, State: Unknown}
		if i := slices.IndexFunc(judged, func(j judging) bool { return j.name == n.name }); i >= 0 {
			p.State, p.Evidence = judged[i].health, judged[i].evidence
		}
		if st, ok := d.states[n.name]; ok {
			p.SinceText = "since " + clock(st.since) + ", " + ago(st.since, now)
		}
		for _, spec := range metricSpecs {
			if spec.component != n.name {
				continue
			}
			mv := MetricView{
				Key: spec.key, Label: spec.label,
				Value: format(spec.value(d.hist.current), spec.unit),
				Spark: sparkPath(d.hist.series[spec.key].points(), spec.unit),
			}
			if e, ok := d.hist.current.est[spec.key]; ok {
				mv.Value, mv.Source = quantText(e), quantSource(spec.key, e, dur(d.o.Recent))
			}
			p.Metrics = append(p.Metrics, mv)
		}
		if n.name == "replicas" {
			for _, x := range d.hist.current.replicas {
				p.Replicas = append(p.Replicas, ReplicaView{Name: x.name, InRotation: x.inRotation,
					LagBytes: format(x.lagBytes, unitBytes), LagSeconds: format(x.lagSeconds, unitSeconds)})
			}
		}
		s.Panels = append(s.Panels, p)
	}
	if errs := src.errors; len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b ErrorEntry) int { return b.Time.Compare(a.Time) })
		for _, e := range errs[:min(len(errs), listLimit)] {
			s.Errors = append(s.Errors, ErrorView{Time: clock(e.Time), Where: e.Where, Status: e.Status, Message: e.Message, RequestID: e.RequestID})
		}
	}
	s.Writer = writerView(d.hist.current.writer, dur(d.o.Recent))
	s.Advice = advise.Advice{At: now, Window: dur(d.o.Recent), Verdicts: advise.Advise(d.hist.measurements(), d.o.Advice)}
	s.SlowQueries = groupSlow(src.slow)
	s.Diagnosis.Latency = d.latency(s.Panels)
	if ts := src.traces; len(ts) > 0 {
		slices.SortStableFunc(ts, func(a, b Trace) int { return cmp.Compare(b.Duration, a.Duration) })
		for _, t := range ts[:min(len(ts), 10)] {
			s.Traces = append(s.Traces, traceView(t))
		}
	}
	return s
}

// latency is the diagnosis's headline quantiles.
func (d *Dashboard) latency(panels []Panel) []Number {
	names := map[string]string{"http.p50": "HTTP p50", "http.p95": "HTTP p95", "http.p99": "HTTP p99", "db.p95": "query p95"}
	var out []Number
	for _, p := range panels {
		for _, m := range p.Metrics {
			if n, ok := names[m.Key]; ok && m.Value != "–" {
				out = append(out, Number{Name: n, Value: m.Value, Source: m.Source})
			}
		}
	}
	routes := d.hist.current.routeP95
	keys := slices.Collect(maps.Keys(routes))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(routes[b], routes[a]), cmp.Compare(a, b)) })
	for _, k := range keys[:min(len(keys), 3)] {
		out = append(out, Number{Name: "p95 " + k, Value: secs(routes[k]),
			Source: "the route's own summary, last " + dur(d.o.SummaryWindow)})
	}
	return out
}

// groupSlow groups the slow-query log by query name, ranked by the time
// its runs took in all.
func groupSlow(qs []SlowQuery) []SlowQueryView {
	type group struct {
		runs    []time.Duration
		total   time.Duration
		newest  time.Time
		slowest SlowQuery
	}
	groups := map[string]*group{}
	for _, q := range qs {
		g := groups[q.Name]
		if g == nil {
			g = &group{}
			groups[q.Name] = g
		}
		g.runs = append(g.runs, q.Duration)
		g.total += q.Duration
		if q.Time.After(g.newest) {
			g.newest = q.Time
		}
		if q.Duration >= g.slowest.Duration {
			g.slowest = q
		}
	}
	names := slices.Collect(maps.Keys(groups))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(groups[b].total, groups[a].total), cmp.Compare(a, b))
	})
	var out []SlowQueryView
	for _, n := range names[:min(len(names), listLimit)] {
		g := groups[n]
		slices.Sort(g.runs)
		out = append(out, SlowQueryView{
			Time: clock(g.newest), Name: n, Count: len(g.runs),
			P95: secs(nearestRank(g.runs, 0.95).Seconds()), Max: secs(g.runs[len(g.runs)-1].Seconds()),
			Total: secs(g.total.Seconds()),
			SQL:   strings.TrimSpace(g.slowest.SQL), Plan: strings.TrimSpace(g.slowest.Plan), RequestID: g.slowest.RequestID,
		})
	}
	return out
}

// nearestRank is the q-quantile of sorted durations by the nearest-rank
// method: one of them, never an interpolation.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func traceView(t Trace) TraceView {
	v := TraceView{Name: t.Name, Time: clock(t.Start), Duration: secs(t.Duration.Seconds()), RequestID: t.RequestID}
	total := t.Duration.Seconds()
	for _, sp := range t.Spans {
		sv := SpanView{Name: sp.Name, Duration: secs(sp.Duration.Seconds()), Depth: sp.Depth, Error: sp.Error, Width: 100}
		if total > 0 {
			sv.Offset = clamp(100*sp.Offset.Seconds()/total, 0, 100)
			sv.Width = clamp(100*sp.Duration.Seconds()/total, 0.5, 100-sv.Offset)
		}
		v.Spans = append(v.Spans, sv)
	}
	return v
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(v, hi)) }
