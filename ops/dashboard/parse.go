package dashboard

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// label is one name="value" pair of a series.
type label struct{ name, value string }

// sample is one series of a metric and its value.
type sample struct {
	labels []label // sorted by name
	value  float64
}

func (s sample) label(name string) string {
	for _, l := range s.labels {
		if l.name == name {
			return l.value
		}
	}
	return ""
}

// snapshot is one scrape, by series name: a histogram's or a summary's
// parts appear under their exposition names (name_bucket, name_sum,
// name_count, and name with a quantile label).
type snapshot struct {
	at      time.Time
	metrics map[string][]sample
}

// parseExposition reads Prometheus text exposition with the Prometheus
// project's own parser (expfmt), so that what a Prometheus server would
// read is what the dashboard reads. A malformed exposition is an error,
// so a broken scrape is noticed instead of being read as zeros.
func parseExposition(r io.Reader, at time.Time) (snapshot, error) {
	snap := snapshot{at: at, metrics: map[string][]sample{}}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return snapshot{}, err
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			ls := make([]label, 0, len(m.GetLabel())+1)
			for _, lp := range m.GetLabel() {
				ls = append(ls, label{lp.GetName(), lp.GetValue()})
			}
			add := func(series string, v float64, extra ...label) {
				all := append(slices.Clone(ls), extra...)
				slices.SortFunc(all, func(a, b label) int { return strings.Compare(a.name, b.name) })
				snap.metrics[series] = append(snap.metrics[series], sample{labels: all, value: v})
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				// VictoriaMetrics' histograms are untyped: their
				// name_bucket{vmrange}, name_sum and name_count come as
				// series of their own.
				add(name, m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					add(name, q.GetValue(), label{"quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)})
				}
				add(name+"_sum", s.GetSampleSum())
				add(name+"_count", float64(s.GetSampleCount()))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", float64(b.GetCumulativeCount()), label{"le", formatBound(b.GetUpperBound())})
				}
				add(name+"_sum", h.GetSampleSum())
				add(name+"_count", float64(h.GetSampleCount()))
			default:
				return snapshot{}, fmt.Errorf("%s: unsupported metric type %s", name, mf.GetType())
			}
		}
	}
	return snap, nil
}

func formatBound(b float64) string {
	if math.IsInf(b, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(b, 'g', -1, 64)
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

// sum adds the series of a metric that match (nil matches all).
// The second result is false when the metric is absent.
func (s snapshot) sum(name string, match func(sample) bool) (float64, bool) {
	series, ok := s.metrics[name]
	total := 0.0
	for _, x := range series {
		if match == nil || match(x) {
			total += x.value
		}
	}
	return total, ok
}

// max is the largest value of a metric's series.
func (s snapshot) max(name string) (float64, bool) {
	series, ok := s.metrics[name]
	m := math.Inf(-1)
	for _, x := range series {
		m = math.Max(m, x.value)
	}
	return m, ok && len(series) > 0
}

// by sums a metric's series grouped by one label's value.
func (s snapshot) by(name, labelName string, keep func(sample) bool) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s.metrics[name] {
		if keep == nil || keep(x) {
			out[x.label(labelName)] += x.value
		}
	}
	return out
}

func withLabel(name, value string) func(sample) bool {
	return func(s sample) bool { return s.label(name) == value }
}

// histogram is a cumulative histogram: counts[i] observations were at
// most bounds[i], and those of bucket i were above lows[i]. For `le`
// buckets lows[i] is bounds[i-1]; VictoriaMetrics exposes only the
// vmrange buckets that have observations, so there a bucket's low is
// its own, not the previous bound. The last bound is +Inf.
type histogram struct {
	bounds, lows []float64
	counts       []float64
}

// histograms reads the histogram name (its _bucket series), merged per
// value of the label group ("" merges all series). Both Prometheus `le`
// buckets and VictoriaMetrics `vmrange` buckets are understood; series
// whose labels fail keep are left out.
func (s snapshot) histograms(name, group string, keep func(sample) bool) map[string]histogram {
	type acc struct {
		cum   map[float64]float64 // le → cumulative count
		delta map[float64]float64 // vmrange upper bound → count in range
		lows  map[float64]float64 // vmrange upper bound → its lower bound
	}
	accs := map[string]*acc{}
	for _, x := range s.metrics[name+"_bucket"] {
		if keep != nil && !keep(x) {
			continue
		}
		g := ""
		if group != "" {
			g = x.label(group)
		}
		a := accs[g]
		if a == nil {
			a = &acc{cum: map[float64]float64{}, delta: map[float64]float64{}, lows: map[float64]float64{}}
			accs[g] = a
		}
		if le := x.label("le"); le != "" {
			if b, err := parseValue(le); err == nil {
				a.cum[b] += x.value
			}
		} else if vr := x.label("vmrange"); vr != "" {
			lo, hi, ok := strings.Cut(vr, "...")
			l, err1 := parseValue(lo)
			b, err2 := parseValue(hi)
			if ok && err1 == nil && err2 == nil {
				a.delta[b] += x.value
				a.lows[b] = l
			}
		}
	}
	out := make(map[string]histogram, len(accs))
	for g, a := range accs {
		if len(a.delta) > 0 {
			// vmrange buckets hold the count of their own range only.
			run := 0.0
			for _, b := range slices.Sorted(maps.Keys(a.delta)) {
				run += a.delta[b]
				a.cum[b] += run
			}
		}
		var h histogram
		h.bounds = slices.Sorted(maps.Keys(a.cum))
		for i, b := range h.bounds {
			h.counts = append(h.counts, a.cum[b])
			low := 0.0
			if i > 0 {
				low = h.bounds[i-1]
			}
			if l, ok := a.lows[b]; ok {
				low = math.Max(low, l)
			}
			h.lows = append(h.lows, low)
		}
		if len(h.bounds) == 0 || !math.IsInf(h.bounds[len(h.bounds)-1], 1) {
			// VictoriaMetrics ranges end at a finite bound: the total is
			// what the last one has.
			var total, low float64
			if len(h.counts) > 0 {
				total, low = h.counts[len(h.counts)-1], h.bounds[len(h.bounds)-1]
			}
			h.bounds = append(h.bounds, math.Inf(1))
			h.lows = append(h.lows, low)
			h.counts = append(h.counts, total)
		}
		out[g] = h
	}
	return out
}

// sub is the histogram of the observations made between old and h. A
// counter reset (the process restarted) makes h itself the answer.
func (h histogram) sub(old histogram) histogram {
	prev := make(map[float64]float64, len(old.bounds))
	for i, b := range old.bounds {
		prev[b] = old.counts[i]
	}
	// old may lack bounds h has (a vmrange bucket first filled since):
	// there it had what it had at its next lower bound.
	d := histogram{bounds: h.bounds, lows: h.lows, counts: make([]float64, len(h.counts))}
	below := 0.0
	for i, b := range h.bounds {
		p, ok := prev[b]
		if !ok {
			p = cumulativeAt(old, b)
		}
		d.counts[i] = h.counts[i] - p
		if d.counts[i] < below || d.counts[i] < 0 {
			return h
		}
		below = d.counts[i]
	}
	return d
}

// cumulativeAt is how many observations h has at most b.
func cumulativeAt(h histogram, b float64) float64 {
	c := 0.0
	for i, x := range h.bounds {
		if x > b {
			break
		}
		c = h.counts[i]
	}
	return c
}

func (h histogram) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// estimate is a quantile read from a histogram: the true value lies in
// (lo, hi], the bucket the rank falls in; v is the number for
// sparklines and thresholds. NaN v means no observations.
type estimate struct {
	v, lo, hi float64
}

// maxPointWidth is the widest bucket (hi/lo) whose geometric middle is
// shown as a point: any value in it is then within 10 % of the middle
// (sqrt(1.21) = 1.1). VictoriaMetrics' vmrange buckets (10^(1/18) ≈
// 1.136 wide) qualify; a bucket wider is shown as its range.
const maxPointWidth = 1.21

// precise reports whether the estimate is a point within 10 %.
func (e estimate) precise() bool {
	return e.lo > 0 && !math.IsInf(e.hi, 1) && e.hi/e.lo <= maxPointWidth
}

func noEstimate() estimate { return estimate{math.NaN(), math.NaN(), math.NaN()} }

// quantile finds the bucket the q-quantile (0 < q < 1) falls in. Its
// point value is the bucket's geometric middle when the bucket is
// narrow enough to promise 10 % (see maxPointWidth); otherwise it is
// interpolated linearly as Prometheus's histogram_quantile does, which
// is only good for sparklines and thresholds, and the display shows the
// range instead.
func (h histogram) quantile(q float64) estimate {
	total := h.total()
	if total <= 0 {
		return noEstimate()
	}
	rank := q * total
	below := 0.0
	for i, b := range h.bounds {
		c := h.counts[i]
		if c < rank || c == below {
			below = c
			continue
		}
		e := estimate{lo: h.lows[i], hi: b}
		switch {
		case math.IsInf(b, 1):
			e.v = e.lo
		case e.precise():
			e.v = math.Sqrt(e.lo * e.hi)
		default:
			e.v = e.lo + (b-e.lo)*(rank-below)/(c-below)
		}
		return e
	}
	return noEstimate()
}

// merge adds histograms, over the union of their bounds: at a bound one
// of them lacks, it counts what it has at its next lower bound.
func merge(hs ...histogram) histogram {
	union := map[float64]float64{} // bound → its bucket's low
	for _, h := range hs {
		for i, b := range h.bounds {
			union[b] = math.Max(union[b], h.lows[i])
		}
	}
	m := histogram{bounds: slices.Sorted(maps.Keys(union))}
	m.counts = make([]float64, len(m.bounds))
	m.lows = make([]float64, len(m.bounds))
	for i, b := range m.bounds {
		m.lows[i] = union[b]
		if i > 0 {
			m.lows[i] = math.Max(m.lows[i], m.bounds[i-1])
		}
	}
	for _, h := range hs {
		j := -1 // h's largest bound <= the current one
		for i, b := range m.bounds {
			for j+1 < len(h.bounds) && h.bounds[j+1] <= b {
				j++
			}
			if j >= 0 {
				m.counts[i] += h.counts[j]
			}
		}
	}
	return m
}
