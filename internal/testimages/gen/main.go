// Command gen writes testimages' generated files into testdata/images and
// their rows into its SOURCES.tsv (run by `go generate
// ./internal/testimages`). With -o it writes one generated photo instead,
// for benchmarks and examples that want a large image as a file:
//
//	go run ./internal/testimages/gen -o /tmp/photo_12mp.jpg   # what the tests' 12 MP photo is
//	go run ./internal/testimages/gen -o /tmp/p.jpg -size 6000x4000
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"onebox/internal/testimages"
)

func main() {
	out := flag.String("o", "", "write one generated photo (baseline JPEG, quality 90) to this file instead")
	size := flag.String("size", "4032x3024", "the photo's size, with -o")
	seed := flag.Uint64("seed", testimages.Photo12MPSeed, "the photo's seed, with -o")
	flag.Parse()
	var err error
	if *out != "" {
		err = photo(*out, *size, *seed)
	} else {
		err = generate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func photo(out, size string, seed uint64) error {
	w, h, err := testimages.ParseSize(size)
	if err != nil {
		return fmt.Errorf("-size: %w", err)
	}
	b, err := testimages.PhotoJPEG(w, h, seed, 90)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o644)
}

func generate() error {
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
