package imaging_test

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image/png"
	"runtime"
	"testing"

	"onebox/imaging"
)

// withPNGChunk inserts a chunk right after IHDR of the PNG p.
func withPNGChunk(p []byte, typ string, data []byte) []byte {
	const ihdrEnd = 8 + 8 + 13 + 4
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, typ...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return append(append(append([]byte{}, p[:ihdrEnd]...), chunk...), p[ihdrEnd:]...)
}

// tiffOrientation is a minimal big-endian TIFF with IFD0 holding only an
// orientation tag.
func tiffOrientation(o uint16) []byte {
	t := []byte("MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01")
	t = binary.BigEndian.AppendUint16(t, o)
	return append(t, 0, 0, 0, 0, 0, 0)
}

func zlibBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

func TestPNGMetadata(t *testing.T) {
	t.Parallel()
	var base bytes.Buffer
	if err := png.Encode(&base, gradient(64, 32)); err != nil {
		t.Fatal(err)
	}
	profile := fakeICC("RGB ")
	tests := []struct {
		name    string
		data    func(t *testing.T) []byte
		w, h    int
		wantICC []byte
	}{
		{"eXIf orientation 6", func(*testing.T) []byte {
			return withPNGChunk(base.Bytes(), "eXIf", tiffOrientation(6))
		}, 32, 64, nil},
		{"eXIf with Exif prefix, orientation 3", func(*testing.T) []byte {
			return withPNGChunk(base.Bytes(), "eXIf", append([]byte("Exif\x00\x00"), tiffOrientation(3)...))
		}, 64, 32, nil},
		{"eXIf orientation 9 is invalid", func(*testing.T) []byte {
			return withPNGChunk(base.Bytes(), "eXIf", tiffOrientation(9))
		}, 64, 32, nil},
		{"iCCP", func(t *testing.T) []byte {
			return withPNGChunk(base.Bytes(), "iCCP", append([]byte("sRGB\x00\x00"), zlibBytes(t, profile)...))
		}, 64, 32, profile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img, err := imaging.Decode(context.Background(), bytes.NewReader(tt.data(t)), 0)
			if err != nil {
				t.Fatal(err)
			}
			if img.Width != tt.w || img.Height != tt.h {
				t.Errorf("decoded %dx%d, want %dx%d", img.Width, img.Height, tt.w, tt.h)
			}
			if !bytes.Equal(img.ICC, tt.wantICC) {
				t.Errorf("ICC is %d bytes, want %d", len(img.ICC), len(tt.wantICC))
			}
		})
	}
}

func TestJPEGICCChunks(t *testing.T) {
	t.Parallel()
	src := mustRead(t, "formats/jpeg_baseline_testorig.jpg")
	profile := fakeICC("RGB ")
	profile = append(profile, bytes.Repeat([]byte("0123456789"), 100)...)
	first, second := profile[:500], profile[500:]
	chunk := func(seq, n byte, part []byte) []byte {
		payload := append([]byte("ICC_PROFILE\x00"), seq, n)
		payload = append(payload, part...)
		seg := binary.BigEndian.AppendUint16([]byte{0xff, 0xe2}, uint16(len(payload)+2))
		return append(seg, payload...)
	}
	insert := func(segs ...[]byte) []byte {
		out := append([]byte{}, src[:2]...)
		for _, s := range segs {
			out = append(out, s...)
		}
		return append(out, src[2:]...)
	}
	tests := []struct {
		name string
		data []byte
		want []byte
	}{
		{"in order", insert(chunk(1, 2, first), chunk(2, 2, second)), profile},
		{"out of order", insert(chunk(2, 2, second), chunk(1, 2, first)), profile},
		{"missing chunk", insert(chunk(1, 2, first)), nil},
		{"duplicate chunk", insert(chunk(1, 2, first), chunk(1, 2, first), chunk(2, 2, second)), nil},
		{"inconsistent count", insert(chunk(1, 2, first), chunk(2, 3, second)), nil},
		{"sequence zero", insert(chunk(0, 1, profile)), nil},
		{"not a profile", insert(chunk(1, 1, []byte("hello"))), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img, err := imaging.Decode(context.Background(), bytes.NewReader(tt.data), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img.ICC, tt.want) {
				t.Errorf("ICC is %d bytes, want %d", len(img.ICC), len(tt.want))
			}
		})
	}
}

// TestICCBomb: iCCP chunks of some 64 KB that inflate to 64 MB are read
// no further than the size the profile declares, and a declared size
// over the cap is refused. It measures process-wide allocation, so it
// does not run in parallel.
func TestICCBomb(t *testing.T) {
	var base bytes.Buffer
	if err := png.Encode(&base, gradient(64, 32)); err != nil {
		t.Fatal(err)
	}
	// 64 MB of zeros as a final raw DEFLATE block sequence, compressed
	// once: deflate is slow under the race detector.
	var zeros bytes.Buffer
	fw, err := flate.NewWriter(&zeros, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	for range 64 {
		if _, err := fw.Write(block); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	// bomb is a zlib stream of header then the zeros: the header as a
	// flushed (byte-aligned, not final) block, then the shared tail. The
	// Adler-32 trailer is left out; a reader that stops early never
	// checks it, and one that does not is what this test catches.
	bomb := func(header []byte) []byte {
		var z bytes.Buffer
		z.Write([]byte{0x78, 0x01}) // zlib: deflate, 32 KB window
		hw, err := flate.NewWriter(&z, flate.BestSpeed)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hw.Write(header); err != nil {
			t.Fatal(err)
		}
		if err := hw.Flush(); err != nil {
			t.Fatal(err)
		}
		z.Write(zeros.Bytes())
		return z.Bytes()
	}
	profile := fakeICC("RGB ")
	huge := fakeICC("RGB ")
	binary.BigEndian.PutUint32(huge, 1<<31)
	tests := []struct {
		name   string
		header []byte
		want   []byte
	}{
		{"trailing zeros", profile, profile},
		{"declared 2 GB", huge, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := withPNGChunk(base.Bytes(), "iCCP", append([]byte("x\x00\x00"), bomb(tt.header)...))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			img, err := imaging.Decode(context.Background(), bytes.NewReader(data), 0)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img.ICC, tt.want) {
				t.Errorf("profile is %d bytes, want %d", len(img.ICC), len(tt.want))
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
				t.Errorf("allocated %d MB decoding a %d KB file", got>>20, len(data)>>10)
			}
		})
	}
}
