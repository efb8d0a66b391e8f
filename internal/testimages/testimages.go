// Package testimages gives tests the repository's own test images, so a
// fresh clone tests itself: testdata/images holds third-party files whose
// licences allow redistribution, and files this package generates in
// place of the ones whose licences do not (testdata/images/SOURCES.tsv
// says which is which). Images too large to commit (the 12-megapixel
// photo) are generated at test time.
//
// Run `go generate ./internal/testimages` after changing a generator; its
// test fails while the committed files differ from what it makes.
package testimages

//go:generate go run ./gen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Root returns the repository's root: the nearest directory at or above
// the working directory (a test's package directory) holding onebox's
// go.mod.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(mod), "module onebox\n") {
			return dir, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testimages: no onebox go.mod above the working directory")
		}
		dir = parent
	}
}

// Dir returns the absolute path of testdata/images. A missing directory
// fails the test: the images are part of the repository, never optional.
func Dir(t testing.TB) string {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "testdata", "images")
	if _, err := os.Stat(filepath.Join(dir, "SOURCES.tsv")); err != nil {
		t.Fatalf("test images: %v", err)
	}
	return dir
}

// Path returns the absolute path of rel (slash-separated, relative to
// testdata/images), failing the test if there is no such file.
func Path(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Dir(t), filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test image %s: %v", rel, err)
	}
	return p
}

// Read returns the bytes of rel (relative to testdata/images).
func Read(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Photo12MPSeed is the seed of Photo12MP's picture.
const Photo12MPSeed = 12

// Photo12MP returns a 4032×3024 baseline JPEG with a photo's structure
// (gradients, soft shapes, edges, fine texture), standing in for a
// 12-megapixel camera photo; about 1-2 MB. It takes a second or more, so
// call it once per test.
func Photo12MP(t testing.TB) []byte {
	t.Helper()
	b, err := PhotoJPEG(4032, 3024, Photo12MPSeed, 90)
	if err != nil {
		t.Fatal(fmt.Errorf("testimages: 12 MP photo: %w", err))
	}
	return b
}
