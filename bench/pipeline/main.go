// Command pipeline times imaging.Decode plus imaging.Variants on one file,
// the work of one photo upload, and reports the peak resident memory. It
// is the onebox half of bench/pipeline.sh, which runs libvips beside it.
//
//	go run ./bench/pipeline testdata/images/formats/jpeg_gray_hopper.jpg
//	go run ./bench/pipeline -generate 4032x3024             # a 12-MP photo made in Go
//	go run ./bench/pipeline -generate 4032x3024 -save a.jpg # write it and exit
//
// -generate makes a deterministic photo-like JPEG (internal/testimages.PhotoJPEG, the tests' 12 MP photo at 4032x3024), so the
// large-image benchmark needs no file from outside the repository.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"onebox/imaging"
	"onebox/internal/testimages"
)

func main() {
	runs := flag.Int("n", 5, "number of runs")
	out := flag.String("o", "", "directory to write the last run's outputs to (optional)")
	quality := flag.Int("q", 82, "JPEG quality")
	maxPixels := flag.Int64("max-pixels", imaging.DefaultMaxPixels, "pixel limit")
	gen := flag.String("generate", "", "instead of reading FILE, generate a photo-like JPEG of this size, WIDTHxHEIGHT (4032x3024: 12 MP)")
	save := flag.String("save", "", "with -generate: write the generated JPEG to this file and exit")
	flag.Parse()
	if (*gen == "") != (flag.NArg() == 1) || (*save != "" && *gen == "") {
		fmt.Fprintln(os.Stderr, "usage: pipeline [-n runs] [-o dir] [-q quality] FILE\n       pipeline [-n runs] [-o dir] [-q quality] -generate WIDTHxHEIGHT [-save FILE]")
		os.Exit(2)
	}
	if err := run(context.Background(), flag.Arg(0), *gen, *save, *runs, *out, *quality, *maxPixels); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path, gen, save string, runs int, outDir string, quality int, maxPixels int64) error {
	var data []byte
	var err error
	if gen != "" {
		w, h, err := testimages.ParseSize(gen)
		if err != nil {
			return err
		}
		if data, err = testimages.PhotoJPEG(w, h, testimages.Photo12MPSeed, 90); err != nil {
			return err
		}
		path = "generated-" + gen + ".jpg"
		if save != "" {
			return os.WriteFile(save, data, 0o644)
		}
	} else if data, err = os.ReadFile(path); err != nil {
		return err
	}
	h, err := imaging.Probe(bytes.NewReader(data), maxPixels)
	if err != nil {
		return err
	}
	fmt.Printf("file %s (%.1f MB): %s %dx%d, GOMAXPROCS %d, DecodeBytes estimate %.1f MB\n",
		filepath.Base(path), float64(len(data))/1e6, h.Format, h.Width, h.Height, runtime.GOMAXPROCS(0), float64(h.DecodeBytes())/1e6)
	var outs []imaging.Output
	var total time.Duration
	for i := range runs {
		start := time.Now()
		img, err := imaging.Decode(ctx, bytes.NewReader(data), maxPixels)
		if err != nil {
			return err
		}
		decoded := time.Since(start)
		outs, err = imaging.Variants(ctx, img, imaging.Options{JPEGQuality: quality})
		if err != nil {
			return err
		}
		d := time.Since(start)
		total += d
		fmt.Printf("run %d: %6.1f ms (decode %6.1f ms)\n", i+1, ms(d), ms(decoded))
	}
	fmt.Printf("onebox mean: %.1f ms per run, peak RSS %s\n", ms(total)/float64(runs), peakRSS())
	if outDir == "" {
		return nil
	}
	for _, o := range outs {
		ext := ".jpg"
		if strings.HasSuffix(o.ContentType, "png") {
			ext = ".png"
		}
		if err := os.WriteFile(filepath.Join(outDir, o.Name+ext), o.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// peakRSS is VmHWM from /proc/self/status (Linux).
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
