package dashboard

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// format prints a value in its unit, or "–" for no data.
func format(v float64, u unit) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	switch u {
	case unitRate:
		return count(v) + "/s"
	case unitRatio:
		return pct(v)
	case unitSeconds:
		return secs(v)
	case unitSecondsPerSecond:
		return secs(v) + "/s"
	case unitBytes:
		return bytesize(v)
	}
	return count(v)
}

func pct(v float64) string {
	switch p := 100 * v; {
	case p == 0 || p >= 10:
		return fmt.Sprintf("%.0f %%", p)
	case p < 0.1:
		return "<0.1 %"
	default:
		return fmt.Sprintf("%.1f %%", p)
	}
}

func count(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v == math.Trunc(v) || a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// secs prints seconds the way an operator reads them: 350 µs, 8 ms,
// 4.1 s, 2m10s.
func secs(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0 s"
	case a < 1e-3:
		return fmt.Sprintf("%.0f µs", v*1e6)
	case a < 10e-3:
		return fmt.Sprintf("%.1f ms", v*1e3)
	case a < 1:
		return fmt.Sprintf("%.0f ms", v*1e3)
	case a < 60:
		return fmt.Sprintf("%.1f s", v)
	}
	return dur(time.Duration(v * float64(time.Second)).Round(time.Second))
}

// dur prints a duration without zero tails: 5m, 1h30m, 2s.
func dur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func bytesize(v float64) string {
	const unit = 1024
	if v < unit {
		return fmt.Sprintf("%.0f B", v)
	}
	exp, n := 0, v/unit
	for n >= unit && exp < 4 {
		n /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", n, "KMGTP"[exp])
}

// clock prints a time of day for the page; zero is "".
func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format("15:04:05")
}

// ago prints how long before now t was: "4m ago".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	}
	return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
}

// quantText prints a quantile read from a histogram: a point when its
// bucket is narrow enough to be within 10 % (estimate.precise), else the
// bucket's range, which holds the truth, rather than a point
// interpolated inside it, which need not be near it.
func quantText(e estimate) string {
	switch {
	case math.IsNaN(e.v):
		return "–"
	case math.IsInf(e.hi, 1):
		return "over " + secs(e.lo)
	case e.precise():
		return secs(e.v)
	}
	return secs(e.lo) + "–" + secs(e.hi)
}

// quantScope says what a histogram quantile merges, by metricSpec key.
var quantScope = map[string]string{
	"http.p50": "all routes", "http.p95": "all routes", "http.p99": "all routes",
	"cache.load": "all caches", "workers.p95": "all job kinds", "db.p95": "all queries",
}

// quantSource states where a quantile comes from and over what window.
func quantSource(key string, e estimate, recent string) string {
	if math.IsNaN(e.v) {
		return ""
	}
	s := fmt.Sprintf("histogram of %s, last %s", quantScope[key], recent)
	if e.precise() {
		s += fmt.Sprintf(": middle of the bucket %s–%s, within 7 %%", secs(e.lo), secs(e.hi))
	} else {
		s += ": the bucket it falls in, too wide for a point"
	}
	return s
}
