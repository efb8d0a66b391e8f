// Command gen writes testimages' generated files into testdata/images and
// their rows into its SOURCES.tsv (run by `go generate
// ./internal/testimages`).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"onebox/internal/testimages"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := testimages.Root()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "testdata", "images")
	var rows []string
	for _, f := range testimages.Generated() {
		b, err := f.Make(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		rows = append(rows, f.Row(b))
	}
	// Keep the copied files' rows; replace the generated ones.
	sources := filepath.Join(dir, "SOURCES.tsv")
	old, err := os.ReadFile(sources)
	if err != nil {
		return err
	}
	var kept []string
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if !strings.Contains(line, "\tonebox (generated)\t") {
			kept = append(kept, line)
		}
	}
	return os.WriteFile(sources, []byte(strings.Join(append(kept, rows...), "\n")+"\n"), 0o644)
}
