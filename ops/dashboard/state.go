package dashboard

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// State is everything the page shows, as /ops/api/state serves it.
// Numbers come formatted for people; the diagnosis and alerts keep their
// raw fields for machines.
type State struct {
	Updated     time.Time       `json:"updated"`
	UpdatedText string          `json:"updated_text"`
	ScrapeError string          `json:"scrape_error,omitempty"`
	IntervalMS  int64           `json:"interval_ms"`
	Window      string          `json:"window"` // span of the sparklines, "1h"
	Recent      string          `json:"recent"` // span of the numbers, "1m"
	Panels      []Panel         `json:"panels"`
	Diagnosis   Diagnosis       `json:"diagnosis"`
	Alerts      []Alert         `json:"alerts"`    // firing now
	AlertLog    []Alert         `json:"alert_log"` // recent transitions, newest first
	Errors      []ErrorView     `json:"errors"`
	SlowQueries []SlowQueryView `json:"slow_queries"`
	Traces      []TraceView     `json:"traces"`
	Wired       map[string]bool `json:"wired"` // which of errors, slow_queries, traces have a source
}

// Panel is one component of the chain.
type Panel struct {
	Name      string       `json:"name"`
	Title     string       `json:"title"`
	State     Health       `json:"state"`
	SinceText string       `json:"since_text"` // "since 12:03:04, 4m ago"
	Evidence  []string     `json:"evidence"`
	Metrics   []MetricView `json:"metrics"` // the first is the headline
}

// MetricView is one number with its sparkline.
type MetricView struct {
	Key   string `json:"key"`
	Label string `json:"label"`
	Value string `json:"value"`
	Spark string `json:"spark"` // SVG path in a viewBox of sparkWidth × sparkHeight
}

type ErrorView struct {
	Time      string `json:"time"`
	Where     string `json:"where"`
	Status    int    `json:"status,omitempty"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

type SlowQueryView struct {
	Time      string `json:"time"`
	Name      string `json:"name"`
	Duration  string `json:"duration"`
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
		},
	}
	for _, n := range graph {
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
			p.Metrics = append(p.Metrics, MetricView{
				Key: spec.key, Label: spec.label,
				Value: format(spec.value(d.hist.current), spec.unit),
				Spark: sparkPath(d.hist.series[spec.key].points(), spec.unit),
			})
		}
		s.Panels = append(s.Panels, p)
	}
	if errs := src.errors; len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b ErrorEntry) int { return b.Time.Compare(a.Time) })
		for _, e := range errs[:min(len(errs), listLimit)] {
			s.Errors = append(s.Errors, ErrorView{Time: clock(e.Time), Where: e.Where, Status: e.Status, Message: e.Message, RequestID: e.RequestID})
		}
	}
	if qs := slices.Clone(src.slow); len(qs) > 0 {
		slices.SortStableFunc(qs, func(a, b SlowQuery) int { return b.Time.Compare(a.Time) })
		for _, q := range qs[:min(len(qs), listLimit)] {
			s.SlowQueries = append(s.SlowQueries, SlowQueryView{
				Time: clock(q.Time), Name: q.Name, Duration: secs(q.Duration.Seconds()),
				SQL: strings.TrimSpace(q.SQL), Plan: strings.TrimSpace(q.Plan), RequestID: q.RequestID,
			})
		}
	}
	if ts := src.traces; len(ts) > 0 {
		slices.SortStableFunc(ts, func(a, b Trace) int { return cmp.Compare(b.Duration, a.Duration) })
		for _, t := range ts[:min(len(ts), 10)] {
			s.Traces = append(s.Traces, traceView(t))
		}
	}
	return s
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
