package testimages_test

import (
	"bytes"
	"image"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"onebox/internal/testimages"
)

// TestGeneratedFilesAreCommitted: the committed files are exactly what the
// generators make, so the generators are their source; after changing
// one (or a Go release changes an encoder), run go generate.
func TestGeneratedFilesAreCommitted(t *testing.T) {
	t.Parallel()
	dir := testimages.Dir(t)
	sources := string(testimages.Read(t, "SOURCES.tsv"))
	for _, f := range testimages.Generated() {
		t.Run(f.Path, func(t *testing.T) {
			t.Parallel()
			want, err := f.Make(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := testimages.Read(t, f.Path); !bytes.Equal(got, want) {
				t.Fatalf("committed file (%d bytes) differs from the generator's (%d bytes): run go generate ./internal/testimages", len(got), len(want))
			}
			if !strings.Contains(sources, "\n"+f.Row(want)+"\n") {
				t.Fatalf("SOURCES.tsv lacks the row %q: run go generate ./internal/testimages", f.Row(want))
			}
		})
	}
}

// TestSources: every file under testdata/images has exactly one row in
// SOURCES.tsv, and every row names a file that is there, with a licence.
func TestSources(t *testing.T) {
	t.Parallel()
	dir := testimages.Dir(t)
	var onDisk []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel != "SOURCES.tsv" && rel != "NOTICES.md" {
			onDisk = append(onDisk, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	lines := strings.Split(strings.TrimRight(string(testimages.Read(t, "SOURCES.tsv")), "\n"), "\n")
	for _, line := range lines[1:] {
		cols := strings.Split(line, "\t")
		if len(cols) != 7 || cols[3] == "" {
			t.Errorf("row %q: want 7 columns and a licence", line)
			continue
		}
		listed = append(listed, cols[0])
	}
	slices.Sort(onDisk)
	slices.Sort(listed)
	if !slices.Equal(onDisk, listed) {
		t.Fatalf("files and SOURCES.tsv rows differ:\nfiles %v\nrows  %v", onDisk, listed)
	}
}

func TestPhoto12MP(t *testing.T) {
	t.Parallel()
	b := testimages.Photo12MP(t)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil || format != "jpeg" || cfg.Width != 4032 || cfg.Height != 3024 {
		t.Fatalf("DecodeConfig = %+v, %q, %v; want a 4032x3024 JPEG", cfg, format, err)
	}
}

func TestDirFailsOutsideTheRepository(t *testing.T) {
	// Not parallel: it changes the working directory.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if _, err := testimages.Root(); err == nil {
		t.Fatal("Root found a repository above a temp dir")
	}
	t.Chdir(wd)
	if _, err := testimages.Root(); err != nil {
		t.Fatal(err)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		w, h int
		ok   bool
	}{
		{"4032x3024", 4032, 3024, true},
		{"1x1", 1, 1, true},
		{"0x10", 0, 0, false},
		{"10x-1", 0, 0, false},
		{"20001x10", 0, 0, false},
		{"4032", 0, 0, false},
		{"4032x3024x2", 0, 0, false},
		{"4032x3024junk", 0, 0, false},
		{"x", 0, 0, false},
	} {
		w, h, err := testimages.ParseSize(tc.in)
		if (err == nil) != tc.ok || w != tc.w || h != tc.h {
			t.Errorf("ParseSize(%q) = %d, %d, %v; want %d, %d, ok %v", tc.in, w, h, err, tc.w, tc.h, tc.ok)
		}
	}
}
