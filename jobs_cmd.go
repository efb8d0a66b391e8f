package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"onebox/config"
)

// jobsCommand is `onebox jobs stats|dead|retry ID…|retry --all`, run
// against the database directly, so it works while the server is down.
func jobsCommand(ctx context.Context, cfg config.Config, args []string, stdout io.Writer, log *slog.Logger) error {
	db, err := openStore(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	q := db.queue
	if len(args) == 0 {
		return fmt.Errorf("usage: onebox jobs stats | dead | retry ID... | retry --all")
	}
	switch args[0] {
	case "stats":
		s, err := q.Stats(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "KIND\tQUEUED\tIN FLIGHT\tDEAD\tOLDEST")
		for _, kind := range slices.Sorted(maps.Keys(s.Kinds)) {
			k := s.Kinds[kind]
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", kind, k.Queued, k.InFlight, k.Dead, k.OldestAge.Round(time.Millisecond))
		}
		return w.Flush()
	case "dead":
		dead, err := q.Dead(ctx, 1000)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		for _, d := range dead {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	case "retry":
		ids := args[1:]
		if len(ids) == 0 {
			return fmt.Errorf("usage: onebox jobs retry ID... | --all")
		}
		if len(ids) == 1 && ids[0] == "--all" {
			ids = nil
		}
		n, err := q.Redrive(ctx, ids...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d job(s) back in the queue\n", n)
		return nil
	}
	return fmt.Errorf("unknown jobs command %q (want stats, dead or retry)", args[0])
}
