package dashboard

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints a diagnosis for a terminal: the summary, the root
// cause with its evidence, what suffers from it, then the whole chain.
// `onebox ops diagnose` prints this.
func (d Diagnosis) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", d.Summary)
	for _, dr := range d.Drills {
		fmt.Fprintf(&b, "DRILL RUNNING: %s\n", dr)
	}
	if len(d.Latency) > 0 {
		fmt.Fprintf(&b, "\nLatency:\n")
		for _, n := range d.Latency {
			fmt.Fprintf(&b, "  %s %s", n.Name, n.Value)
			if n.Source != "" {
				fmt.Fprintf(&b, " (%s)", n.Source)
			}
			b.WriteByte('\n')
		}
	}
	if r := d.Root; r != nil {
		fmt.Fprintf(&b, "\nRoot cause: %s, %s since %s\n", r.Title, strings.ToUpper(string(r.State)), r.Since.Format("15:04:05"))
		for _, e := range r.Evidence {
			fmt.Fprintf(&b, "  - %s\n", e)
		}
		if len(d.Downstream) > 0 {
			fmt.Fprintf(&b, "\nBecause of it:\n")
			for _, f := range d.Downstream {
				fmt.Fprintf(&b, "  - %s: %s\n", strings.ToUpper(string(f.State)), f.Because)
			}
		}
		if len(d.Others) > 0 {
			fmt.Fprintf(&b, "\nSeparate problems:\n")
			for _, f := range d.Others {
				if f.Because != "" {
					fmt.Fprintf(&b, "  - %s: %s\n", strings.ToUpper(string(f.State)), f.Because)
					continue
				}
				fmt.Fprintf(&b, "  - %s %s: %s\n", f.Title, strings.ToUpper(string(f.State)), strings.Join(f.Evidence, "; "))
			}
		}
	}
	fmt.Fprintf(&b, "\nChain (at %s):\n", d.At.Format("15:04:05"))
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, l := range d.Chain {
		since := ""
		if !l.Since.IsZero() {
			since = "since " + l.Since.Format("15:04:05")
		}
		needs := ""
		if len(l.DependsOn) > 0 {
			needs = "needs " + strings.Join(l.DependsOn, ", ")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", l.Title, strings.ToUpper(string(l.State)), since, needs)
	}
	return tw.Flush()
}
