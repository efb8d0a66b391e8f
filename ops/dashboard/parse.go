package dashboard

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// label is one name="value" pair of a series.
type label struct{ name, value string }

// sample is one line of the exposition: a series of a metric and its value.
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

// snapshot is one scrape, by metric name.
type snapshot struct {
	at      time.Time
	metrics map[string][]sample
}

// parseExposition reads Prometheus text exposition: lines of
// `name{l="v",...} value [timestamp]`. Comments and blank lines are
// skipped; a malformed line is an error, so a broken scrape is noticed
// instead of being read as zeros.
func parseExposition(r io.Reader, at time.Time) (snapshot, error) {
	snap := snapshot{at: at, metrics: map[string][]sample{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, s, err := parseLine(line)
		if err != nil {
			return snapshot{}, fmt.Errorf("line %d: %w", n, err)
		}
		snap.metrics[name] = append(snap.metrics[name], s)
	}
	return snap, sc.Err()
}

func parseLine(line string) (string, sample, error) {
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return "", sample{}, fmt.Errorf("no value in %q", line)
	}
	name, rest := line[:i], line[i:]
	var s sample
	if rest[0] == '{' {
		var err error
		if s.labels, rest, err = parseLabels(rest[1:]); err != nil {
			return "", sample{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return "", sample{}, fmt.Errorf("%s: want a value and an optional timestamp, got %q", name, rest)
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return "", sample{}, fmt.Errorf("%s: %w", name, err)
	}
	s.value = v
	sort.Slice(s.labels, func(a, b int) bool { return s.labels[a].name < s.labels[b].name })
	return name, s, nil
}

// parseLabels reads `a="x",b="y"}` and returns what follows the brace.
func parseLabels(s string) ([]label, string, error) {
	var ls []label
	for {
		s = strings.TrimLeft(s, " \t,")
		if strings.HasPrefix(s, "}") {
			return ls, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return nil, "", fmt.Errorf("bad labels near %q", s)
		}
		name := strings.TrimSpace(s[:eq])
		var v strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(s[i])
				}
				continue
			}
			v.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, "", fmt.Errorf("unterminated label %s", name)
		}
		ls = append(ls, label{name, v.String()})
		s = s[i+1:]
	}
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
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
func (s snapshot) by(name, labelName string) map[string]float64 {
	out := map[string]float64{}
	for _, x := range s.metrics[name] {
		out[x.label(labelName)] += x.value
	}
	return out
}

func withLabel(name, value string) func(sample) bool {
	return func(s sample) bool { return s.label(name) == value }
}

// histogram is a cumulative histogram: counts[i] observations were at
// most bounds[i]; the last bound is +Inf.
type histogram struct {
	bounds []float64
	counts []float64
}

// histograms reads the histogram name (its _bucket series), merged per
// value of the label group ("" merges all series). Both Prometheus `le`
// buckets and VictoriaMetrics `vmrange` buckets are understood; series
// whose labels fail keep are left out.
func (s snapshot) histograms(name, group string, keep func(sample) bool) map[string]histogram {
	type acc struct {
		cum   map[float64]float64 // le → cumulative count
		delta map[float64]float64 // vmrange upper bound → count in range
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
			a = &acc{cum: map[float64]float64{}, delta: map[float64]float64{}}
			accs[g] = a
		}
		if le := x.label("le"); le != "" {
			if b, err := parseValue(le); err == nil {
				a.cum[b] += x.value
			}
		} else if vr := x.label("vmrange"); vr != "" {
			if _, hi, ok := strings.Cut(vr, "..."); ok {
				if b, err := parseValue(hi); err == nil {
					a.delta[b] += x.value
				}
			}
		}
	}
	out := make(map[string]histogram, len(accs))
	for g, a := range accs {
		var h histogram
		if len(a.delta) > 0 {
			// vmrange buckets hold the count of their own range only.
			bounds := slices.Sorted(maps.Keys(a.delta))
			run := 0.0
			for _, b := range bounds {
				run += a.delta[b]
				a.cum[b] += run
			}
		}
		h.bounds = slices.Sorted(maps.Keys(a.cum))
		for _, b := range h.bounds {
			h.counts = append(h.counts, a.cum[b])
		}
		if len(h.bounds) == 0 || !math.IsInf(h.bounds[len(h.bounds)-1], 1) {
			// VictoriaMetrics ranges end at a finite bound: the total is
			// what the last one has.
			var total float64
			if len(h.counts) > 0 {
				total = h.counts[len(h.counts)-1]
			}
			h.bounds = append(h.bounds, math.Inf(1))
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
	d := histogram{bounds: h.bounds, counts: make([]float64, len(h.counts))}
	for i, b := range h.bounds {
		d.counts[i] = h.counts[i] - prev[b]
		if d.counts[i] < 0 {
			return h
		}
	}
	return d
}

func (h histogram) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile estimates the q-quantile (0 < q < 1) as Prometheus's
// histogram_quantile does: linear within the bucket it falls in, the
// first bucket starting at 0; in the +Inf bucket, the highest finite
// bound. NaN when there are no observations.
func (h histogram) quantile(q float64) float64 {
	total := h.total()
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range h.bounds {
		c := h.counts[i]
		if c >= rank {
			if math.IsInf(b, 1) {
				return lower
			}
			if c == below {
				return b
			}
			return lower + (b-lower)*(rank-below)/(c-below)
		}
		lower, below = b, c
	}
	return lower
}

// merge adds histograms, over the union of their bounds: at a bound one
// of them lacks, it counts what it has at its next lower bound.
func merge(hs ...histogram) histogram {
	union := map[float64]bool{}
	for _, h := range hs {
		for _, b := range h.bounds {
			union[b] = true
		}
	}
	m := histogram{bounds: slices.Sorted(maps.Keys(union))}
	m.counts = make([]float64, len(m.bounds))
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
