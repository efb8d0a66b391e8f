// Command pipeline times imaging.Decode plus imaging.Variants on one file,
// the work of one photo upload, and reports the peak resident memory. It
// is the onebox half of bench/pipeline.sh, which runs libvips beside it.
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
)

func main() {
	runs := flag.Int("n", 5, "number of runs")
	out := flag.String("o", "", "directory to write the last run's outputs to (optional)")
	quality := flag.Int("q", 82, "JPEG quality")
	maxPixels := flag.Int64("max-pixels", imaging.DefaultMaxPixels, "pixel limit")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pipeline [-n runs] [-o dir] FILE")
		os.Exit(2)
	}
	if err := run(context.Background(), flag.Arg(0), *runs, *out, *quality, *maxPixels); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string, runs int, outDir string, quality int, maxPixels int64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	h, err := imaging.Probe(bytes.NewReader(data), maxPixels)
	if err != nil {
		return err
	}
	fmt.Printf("file %s: %s %dx%d, GOMAXPROCS %d, DecodeBytes estimate %.1f MB\n",
		filepath.Base(path), h.Format, h.Width, h.Height, runtime.GOMAXPROCS(0), float64(h.DecodeBytes())/1e6)
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
