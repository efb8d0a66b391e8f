package dashboard

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// The SQLite writer's series (ops/metrics/writer.go): absent with
// PostgreSQL, and so is the writer panel.
const (
	mWriterHold     = "onebox_db_writer_hold_seconds"    // histogram {holder,query}
	mWriterBlocked  = "onebox_db_writer_blocked_total"   // {holder,query}
	mWriterWaiting  = "onebox_db_writer_waiting"         // gauge
	mWriterHolding  = "onebox_db_writer_holding_seconds" // {holder,query,state}: the hold in progress
	mWriterOther    = "onebox_db_writer_other_process_seconds_total"
	mSQLiteBusy     = "onebox_db_sqlite_busy_total"
	mFileLock       = "onebox_db_file_lock" // {lock,process,pid}
	mWALBytes       = "onebox_db_wal_bytes"
	mWALMaxBytes    = "onebox_db_wal_max_bytes"
	mCheckpointOK   = "onebox_db_checkpoint_last_ok"
	stateOtherProc  = "other_process"
	topHolders      = 5
	holderSeparator = "\x00"
)

// holderReading is one holder and query over Recent.
type holderReading struct {
	holder, query string
	held          float64 // seconds held in all
	holds         float64
	blocked       float64 // writes found waiting when a hold ended
	// longestLo and longestHi bound the longest single hold: the
	// histogram bucket it fell in.
	longestLo, longestHi float64
}

// writerReading is the writer over Recent, and now.
type writerReading struct {
	has     bool
	holders []holderReading // by time held, most first
	// The hold in progress as last sampled; holdingFor is NaN when the
	// writer is free.
	holdingFor                      float64
	holdingBy, holdingQuery, holdSt string
	waiting                         float64
	busy                            float64 // SQLITE_BUSY answers
	otherProcess                    float64 // seconds BEGIN waited for another process
	locks                           []string
	walBytes, walMax, checkpointOK  float64
}

func readWriter(a, b snapshot) writerReading {
	w := writerReading{holdingFor: math.NaN(), walBytes: math.NaN(), walMax: math.NaN(), checkpointOK: math.NaN(), waiting: math.NaN()}
	_, w.has = b.metrics[mWriterWaiting]
	key := func(s sample) string { return s.label("holder") + holderSeparator + s.label("query") }
	byKey := func(s snapshot, name string) map[string]float64 {
		out := map[string]float64{}
		for _, x := range s.metrics[name] {
			out[key(x)] += x.value
		}
		return out
	}
	delta := func(name string) map[string]float64 {
		nb, na := byKey(b, name), byKey(a, name)
		for k, v := range nb {
			if old := na[k]; old <= v {
				nb[k] = v - old
			}
		}
		return nb
	}
	held, holds, blocked := delta(mWriterHold+"_sum"), delta(mWriterHold+"_count"), delta(mWriterBlocked)
	for k, n := range holds {
		if n <= 0 {
			continue
		}
		who, query, _ := strings.Cut(k, holderSeparator)
		hr := holderReading{holder: who, query: query, held: held[k], holds: n, blocked: blocked[k], longestLo: math.NaN(), longestHi: math.NaN()}
		match := func(s sample) bool { return key(s) == k }
		hb, ha := b.histograms(mWriterHold, "", match)[""], a.histograms(mWriterHold, "", match)[""]
		hr.longestLo, hr.longestHi = longest(hb.sub(ha))
		w.holders = append(w.holders, hr)
	}
	slices.SortFunc(w.holders, func(x, y holderReading) int {
		return cmp.Or(cmp.Compare(y.held, x.held), cmp.Compare(x.holder, y.holder), cmp.Compare(x.query, y.query))
	})
	for _, x := range b.metrics[mWriterHolding] {
		w.holdingFor, w.holdingBy, w.holdingQuery, w.holdSt = x.value, x.label("holder"), x.label("query"), x.label("state")
	}
	gauge := func(name string) float64 {
		if v, ok := b.sum(name, nil); ok {
			return v
		}
		return math.NaN()
	}
	w.waiting, w.walBytes, w.walMax, w.checkpointOK = gauge(mWriterWaiting), gauge(mWALBytes), gauge(mWALMaxBytes), gauge(mCheckpointOK)
	w.busy = deltaOf(a, b, mSQLiteBusy, nil)
	w.otherProcess = deltaOf(a, b, mWriterOther, nil)
	for _, x := range b.metrics[mFileLock] {
		w.locks = append(w.locks, fmt.Sprintf("%s lock held by pid %s (%s)", x.label("lock"), x.label("pid"), x.label("process")))
	}
	slices.Sort(w.locks)
	return w
}

// longest is the bucket of a histogram's largest observation; NaN
// without one.
func longest(h histogram) (lo, hi float64) {
	for i := len(h.counts) - 1; i >= 0; i-- {
		below := 0.0
		if i > 0 {
			below = h.counts[i-1]
		}
		if h.counts[i] > below {
			if math.IsInf(h.bounds[i], 1) && i > 0 {
				continue // the +Inf bound repeats the last range's total
			}
			return h.lows[i], h.bounds[i]
		}
	}
	return math.NaN(), math.NaN()
}

func (h holderReading) name() string { return h.holder + " (" + h.query + ")" }

func (h holderReading) longestText() string {
	if math.IsNaN(h.longestHi) {
		return "–"
	}
	return secs(h.longestLo) + "–" + secs(h.longestHi)
}

// judgeWriter adds the writer's evidence to the database's verdict and
// returns the sentence that names who holds it up, "" when nothing does.
// It is the first thing to say about slow writes: the queries that
// waited are the victims, the holder the cause.
func judgeWriter(j *judging) string {
	w, t := j.r.writer, j.t
	if !w.has {
		return ""
	}
	var cause string
	if h := level(w.holdingFor, t.WriterHold.Seconds(), 4); h.Bad() {
		if w.holdSt == stateOtherProc {
			cause = fmt.Sprintf("writer waiting %s so far for a lock another process holds (%s on behalf of %s): %s",
				secs(w.holdingFor), w.holdingQuery, w.holdingBy, locksText(w.locks))
		} else {
			cause = fmt.Sprintf("writer held %s so far by %s (query %s); writes waiting: %s", secs(w.holdingFor), w.holdingBy, w.holdingQuery, count(w.waiting))
		}
		j.flag(h, "%s", cause)
	}
	if w.busy > 0 || w.otherProcess >= t.WriterHold.Seconds() {
		msg := fmt.Sprintf("SQLite answered busy %s times, and transactions waited %s to begin, while onebox's own writer was free: another process (Litestream, a CLI, a second onebox) holds the database: %s",
			count(w.busy), secs(w.otherProcess), locksText(w.locks))
		j.flag(Degraded, "%s", msg)
		if cause == "" {
			cause = msg
		}
	}
	if len(w.holders) > 0 && (cause == "" && (j.r.writerWait >= t.WriterWait || !math.IsNaN(w.waiting) && w.waiting > 0)) {
		top := w.holders[0]
		cause = fmt.Sprintf("writer held longest by %s: %s over the last %s in %s holds, the longest %s, %s writes kept waiting",
			top.name(), secs(top.held), dur(j.h.recent), count(top.holds), top.longestText(), count(top.blocked))
	}
	if !math.IsNaN(w.walMax) && w.walBytes > w.walMax {
		j.flag(Degraded, "WAL %s, over its bound of %s: a reader holds an old snapshot, or checkpoints fail", bytesize(w.walBytes), bytesize(w.walMax))
	}
	if w.checkpointOK == 0 {
		j.flag(Degraded, "the last WAL checkpoint did not finish (busy or failed)")
	}
	return cause
}

func locksText(locks []string) string {
	if len(locks) == 0 {
		return "no other process holds a lock on the file now"
	}
	return strings.Join(locks, ", ")
}

// WriterView is the writer panel: who held the SQLite writer over the
// last Recent, the longest single hold, who holds it now and who waits.
type WriterView struct {
	Holding string       `json:"holding"` // "job x (query) for 3.2 s", or "free"
	Waiting string       `json:"waiting"`
	Holders []HolderView `json:"holders"`
	Longest string       `json:"longest"`
	Busy    string       `json:"busy"`
	Locks   []string     `json:"locks,omitempty"` // other processes'
	WAL     string       `json:"wal"`
	Recent  string       `json:"recent"`
}

// HolderView is one holder and query of the writer over Recent.
type HolderView struct {
	Holder  string `json:"holder"`
	Query   string `json:"query"`
	Held    string `json:"held"`
	Holds   string `json:"holds"`
	Longest string `json:"longest"`
	Blocked string `json:"blocked"` // writes it kept waiting
}

func writerView(w writerReading, recent string) *WriterView {
	if !w.has {
		return nil
	}
	v := &WriterView{Holding: "free", Waiting: format(w.waiting, unitCount), Recent: recent, Locks: w.locks,
		Busy: count(w.busy), Longest: "–"}
	if !math.IsNaN(w.holdingFor) {
		v.Holding = fmt.Sprintf("%s (%s) for %s", w.holdingBy, w.holdingQuery, secs(w.holdingFor))
		if w.holdSt == stateOtherProc {
			v.Holding += ", waiting for another process's lock"
		}
	}
	best := math.NaN()
	for i, h := range w.holders {
		if !math.IsNaN(h.longestHi) && !(h.longestHi <= best) {
			best, v.Longest = h.longestHi, h.longestText()+" by "+h.name()
		}
		if i < topHolders {
			v.Holders = append(v.Holders, HolderView{Holder: h.holder, Query: h.query, Held: secs(h.held), Holds: count(h.holds), Longest: h.longestText(), Blocked: count(h.blocked)})
		}
	}
	v.WAL = "–"
	if !math.IsNaN(w.walBytes) {
		v.WAL = bytesize(w.walBytes) + " of " + bytesize(w.walMax)
		if w.checkpointOK == 0 {
			v.WAL += "; last checkpoint did not finish"
		}
	}
	return v
}
