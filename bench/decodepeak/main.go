// Command decodepeak measures the peak memory of one photo's pipeline
// work (imaging.Probe, the decode-memory admission, imaging.Decode, the
// perceptual hash, imaging.Variants) in a fresh process, to calibrate
// imaging.Header.DecodeBytes and to show what the admission spares the
// process. Build it without -race (the race detector multiplies memory):
//
//	go run ./bench/decodepeak -png 7000x7000                  # a generated 49 MP 16-bit RGBA PNG
//	go run ./bench/decodepeak -png 7000x7000 -budget -1       # the same, admitted whatever its estimate
//	go run ./bench/decodepeak photo.jpg
//
// It applies the garbage-collector defaults onebox serves with (ops.TuneGC:
// GOGC=400 and a 512 MiB soft limit unless GOGC or GOMEMLIMIT are set) and
// the default decode budget derived from them (pipeline.DecodeBudget),
// then reports the resident set before the work, its high-water mark
// (VmHWM) after, and the largest live heap the collector saw. Run with
// GOGC=1 to make the high-water mark follow the live heap closely.
package main

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"onebox/imaging"
	"onebox/moderation/phash"
	"onebox/ops"
	"onebox/pipeline"
)

func main() {
	gen := flag.String("png", "", "generate a WxH 16-bit RGBA PNG of one colour instead of reading FILE")
	interlace := flag.Bool("interlace", false, "with -png: Adam7-interlaced")
	opaque := flag.Bool("opaque", false, "with -png: fully opaque (JPEG variants) instead of half transparent (PNG variants)")
	keep := flag.String("o", "", "with -png: write the generated file here and keep it")
	budget := flag.Int64("budget", 0, "decode memory budget in bytes; 0 is onebox's default (pipeline.DecodeBudget), -1 admits everything")
	maxPixels := flag.Int64("max-pixels", imaging.DefaultMaxPixels, "pixel limit")
	flag.Parse()
	if (*gen == "") == (flag.NArg() == 0) || flag.NArg() > 1 {
		fmt.Fprintln(os.Stderr, "usage: decodepeak [-budget BYTES] [-max-pixels N] (-png WxH [-interlace] [-opaque] [-o FILE] | FILE)")
		os.Exit(2)
	}
	gc := ops.TuneGC(os.LookupEnv, ops.CgroupMemoryMax(os.DirFS("/")))
	if *budget == 0 {
		*budget = pipeline.DecodeBudget(0, gc.MemoryLimit)
	}
	path, name := flag.Arg(0), flag.Arg(0)
	if *gen != "" {
		name = fmt.Sprintf("generated %s 16-bit RGBA PNG (interlaced %t, opaque %t)", *gen, *interlace, *opaque)
		var err error
		if path, err = generatePNG(*gen, *interlace, *opaque, *keep); err != nil {
			fmt.Fprintln(os.Stderr, "decodepeak:", err)
			os.Exit(1)
		}
		if *keep == "" {
			defer os.Remove(path)
		}
	}
	b := "none"
	if *budget > 0 {
		b = mib(*budget)
	}
	fmt.Printf("GOGC %d, GOMEMLIMIT %d MiB, GOMAXPROCS %d, decode budget %s\n",
		gc.GCPercent, gc.MemoryLimit>>20, runtime.GOMAXPROCS(0), b)
	if err := run(context.Background(), name, path, *budget, *maxPixels); err != nil {
		fmt.Fprintln(os.Stderr, "decodepeak:", err)
		os.Exit(1)
	}
}

// run does what the pipeline's worker does with the file at path: probe
// it, check its estimate, rewind, decode, moderate, render the variants.
func run(ctx context.Context, name, path string, budget, maxPixels int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	runtime.GC()
	debug.FreeOSMemory()
	before := status("VmRSS")
	h, err := imaging.Probe(f, maxPixels)
	if err != nil {
		return err
	}
	h.FileSize = fi.Size()
	est := h.DecodeBytes()
	fmt.Printf("file %s (%.1f MB): %s %dx%d (%.1f MP), DecodeBytes estimate %s (%.1f bytes per pixel)\n",
		name, float64(fi.Size())/1e6, h.Format, h.Width, h.Height, float64(h.Width*h.Height)/1e6,
		mib(est), float64(est)/float64(h.Width*h.Height))

	if budget > 0 {
		if err := h.CheckMemory(budget); err != nil {
			var re *imaging.RejectError
			if !errors.As(err, &re) {
				return err
			}
			fmt.Printf("refused: %s\n", re.Reason)
			fmt.Printf("RSS before %s, peak (VmHWM) %s\n", mib(before), mib(status("VmHWM")))
			return nil
		}
		fmt.Println("admitted")
	} else {
		fmt.Println("admitted without a check (-budget -1)")
	}

	live := watchHeap()
	start := time.Now()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	img, err := imaging.Decode(ctx, f, maxPixels)
	if err != nil {
		return err
	}
	decoded := time.Since(start)
	if _, err := phash.New(nil, 0).Moderate(ctx, img.Pixels); err != nil {
		return err
	}
	outs, err := imaging.Variants(ctx, img, imaging.Options{})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	peakLive, peakObjects := live()
	runtime.KeepAlive(outs)
	hwm := status("VmHWM")
	fmt.Printf("processed in %.1f s (decode %.1f s), %d variants\n", elapsed.Seconds(), decoded.Seconds(), len(outs))
	fmt.Printf("RSS before %s, peak (VmHWM) %s: %s over the start, %.2f of the estimate\n",
		mib(before), mib(hwm), mib(hwm-before), float64(hwm-before)/float64(est))
	fmt.Printf("largest live heap after a GC %s, largest heap objects (live and not yet swept) %s\n", mib(peakLive), mib(peakObjects))
	return nil
}

// watchHeap samples the heap every millisecond until the returned
// function is called, which reports the largest live heap a collection
// found and the largest heap in objects (live, plus garbage not yet
// swept).
func watchHeap() (stop func() (live, objects int64)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var maxLive, maxObjects int64
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(s)
		maxLive = max(maxLive, int64(s[0].Value.Uint64()))
		maxObjects = max(maxObjects, int64(s[1].Value.Uint64()))
	}
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				read()
				return
			case <-t.C:
				read()
			}
		}
	})
	return func() (int64, int64) {
		close(done)
		wg.Wait()
		return maxLive, maxObjects
	}
}

// generatePNG writes a w×h 16-bit RGBA PNG of one colour to path, or a
// temporary file if path is empty, and returns where. It goes row by row through zlib, so neither
// the pixels nor the inflated data are ever held: the file is a few MB
// whatever its size.
func generatePNG(size string, interlace, opaque bool, path string) (string, error) {
	data, err := encodePNG(size, interlace, opaque)
	if err != nil {
		return "", err
	}
	if path != "" {
		return path, os.WriteFile(path, data, 0o644)
	}
	f, err := os.CreateTemp("", "decodepeak-*.png")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}

func encodePNG(size string, interlace, opaque bool) ([]byte, error) {
	ws, hs, ok := strings.Cut(size, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return nil, fmt.Errorf("-png wants WxH, got %q", size)
	}
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	var il byte
	if interlace {
		il = 1
	}
	ihdr = append(ihdr, 16, 6, 0, 0, il) // 16 bits, RGBA
	writeChunk(&out, "IHDR", ihdr)

	px := []byte{0x40, 0x00, 0x80, 0x00, 0xc0, 0x00, 0x80, 0x00} // half transparent
	if opaque {
		px[6], px[7] = 0xff, 0xff
	}
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	row := make([]byte, 1+8*w) // filter byte 0, then pixels
	for x := range w {
		copy(row[1+8*x:], px)
	}
	for _, pass := range passes(w, h, interlace) {
		for range pass[1] {
			if _, err := zw.Write(row[:1+8*pass[0]]); err != nil {
				return nil, err
			}
			if z.Len() > 1<<20 {
				writeChunk(&out, "IDAT", z.Bytes())
				z.Reset()
			}
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	writeChunk(&out, "IDAT", z.Bytes())
	writeChunk(&out, "IEND", nil)
	return out.Bytes(), nil
}

// passes lists the width and height of each Adam7 pass (one pass, the
// whole image, when not interlaced); empty passes have no rows.
func passes(w, h int, interlace bool) [][2]int {
	if !interlace {
		return [][2]int{{w, h}}
	}
	adam7 := [7][4]int{{0, 8, 0, 8}, {4, 8, 0, 8}, {0, 4, 4, 8}, {2, 4, 0, 4}, {0, 2, 2, 4}, {1, 2, 0, 2}, {0, 1, 1, 2}}
	var ps [][2]int
	for _, p := range adam7 { // x0, dx, y0, dy
		pw := (w - p[0] + p[1] - 1) / p[1]
		ph := (h - p[2] + p[3] - 1) / p[3]
		if pw > 0 && ph > 0 {
			ps = append(ps, [2]int{pw, ph})
		}
	}
	return ps
}

func writeChunk(out *bytes.Buffer, typ string, data []byte) {
	_ = binary.Write(out, binary.BigEndian, uint32(len(data)))
	crc := crc32.NewIEEE()
	w := io.MultiWriter(out, crc)
	_, _ = io.WriteString(w, typ)
	_, _ = w.Write(data)
	_ = binary.Write(out, binary.BigEndian, crc.Sum32())
}

// status reads a "kB" field of /proc/self/status (Linux), in bytes.
func status(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
