package testimages

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
)

// CMYKAdobeJPEG encodes img as a 4-component baseline JPEG the way
// Photoshop writes CMYK: an Adobe APP14 segment with transform 0, the
// channels stored inverted (255 means no ink), and no ICC profile. Go
// has no CMYK encoder, so each channel is encoded as a grayscale JPEG
// and its entropy-coded data becomes one non-interleaved scan.
func CMYKAdobeJPEG(img *image.CMYK, quality int) ([]byte, error) {
	b := img.Bounds()
	var tables []byte // DQT and DHT, the same for every channel's encode
	var scans [4][]byte
	for c := range 4 {
		g := image.NewGray(b)
		for i := range g.Pix {
			g.Pix[i] = 255 - img.Pix[4*i+c]
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, g, &jpeg.Options{Quality: quality}); err != nil {
			return nil, err
		}
		segs, scan, err := splitJPEG(buf.Bytes())
		if err != nil {
			return nil, err
		}
		if c == 0 {
			for _, s := range segs {
				if s[1] == 0xdb || s[1] == 0xc4 {
					tables = append(tables, s...)
				}
			}
		}
		scans[c] = scan
	}
	out := []byte{0xff, 0xd8}
	out = appendSegment(out, 0xee, []byte("Adobe\x00\x64\x00\x00\x00\x00\x00")) // version 100, flags 0, transform 0
	out = append(out, tables...)
	sof := []byte{8, byte(b.Dy() >> 8), byte(b.Dy()), byte(b.Dx() >> 8), byte(b.Dx()), 4}
	for c := range 4 {
		sof = append(sof, byte(c+1), 0x11, 0) // no subsampling, quantisation table 0
	}
	out = appendSegment(out, 0xc0, sof)
	for c := range 4 {
		out = appendSegment(out, 0xda, []byte{1, byte(c + 1), 0x00, 0, 63, 0})
		out = append(out, scans[c]...)
	}
	return append(out, 0xff, 0xd9), nil
}

// splitJPEG returns the marker segments (each with its marker) before the
// scan of a single-scan JPEG without restart markers, as Go writes them,
// and the entropy-coded data of that scan.
func splitJPEG(j []byte) (segs [][]byte, scan []byte, err error) {
	if !bytes.HasPrefix(j, []byte{0xff, 0xd8}) || !bytes.HasSuffix(j, []byte{0xff, 0xd9}) {
		return nil, nil, errors.New("not a complete JPEG")
	}
	for p := 2; p+4 <= len(j); {
		n := int(binary.BigEndian.Uint16(j[p+2:]))
		if j[p] != 0xff || p+2+n > len(j) {
			return nil, nil, fmt.Errorf("bad segment at %d", p)
		}
		if j[p+1] == 0xda {
			return segs, j[p+2+n : len(j)-2], nil
		}
		segs = append(segs, j[p:p+2+n])
		p += 2 + n
	}
	return nil, nil, errors.New("no scan")
}

func appendSegment(out []byte, marker byte, payload []byte) []byte {
	out = append(out, 0xff, marker)
	out = binary.BigEndian.AppendUint16(out, uint16(len(payload)+2))
	return append(out, payload...)
}

// GrayBombJPEG writes, by hand, a valid baseline grayscale JPEG of w×h
// (multiples of 8) whose every block is flat: with one-symbol Huffman
// tables each block costs two bits, so 20000×14000 (280 megapixels,
// 267 MiB decoded) takes about 1 MiB, and as zero bytes it compresses
// to almost nothing in git.
func GrayBombJPEG(w, h int) []byte {
	out := []byte{0xff, 0xd8}
	dqt := []byte{0} // 8-bit table 0, all ones
	dqt = append(dqt, bytes.Repeat([]byte{1}, 64)...)
	out = appendSegment(out, 0xdb, dqt)
	out = appendSegment(out, 0xc0, []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 1, 1, 0x11, 0})
	// DC table 0 and AC table 0: one code of length 1, "0", for symbol 0
	// (DC difference 0; AC end of block).
	one := append([]byte{1}, make([]byte, 15)...)
	dht := append(append([]byte{0x00}, one...), 0)
	dht = append(append(append(dht, 0x10), one...), 0)
	out = appendSegment(out, 0xc4, dht)
	out = appendSegment(out, 0xda, []byte{1, 1, 0x00, 0, 63, 0})
	blocks := ((w + 7) / 8) * ((h + 7) / 8)
	out = append(out, make([]byte, (2*blocks+7)/8)...)
	return append(out, 0xff, 0xd9)
}

// CorruptHeaderJPEG is the first n bytes of a JPEG whose EXIF segment
// runs past them: SOI and part of an APP1, never a frame header.
func CorruptHeaderJPEG(n int) []byte {
	tiff := []byte("Exif\x00\x00II*\x00\x08\x00\x00\x00")
	tiff = binary.LittleEndian.AppendUint16(tiff, 200) // 200 IFD entries, each a zero tag
	app1 := append(tiff, make([]byte, 200*12+4)...)
	return appendSegment([]byte{0xff, 0xd8}, 0xe1, app1)[:n]
}

// WebP assembles a RIFF WebP file from chunks (fourCC and payload),
// padding odd payloads as RIFF requires.
func WebP(chunks ...Chunk) []byte {
	body := []byte("WEBP")
	for _, c := range chunks {
		body = append(body, c.FourCC...)
		body = binary.LittleEndian.AppendUint32(body, uint32(len(c.Data)))
		body = append(body, c.Data...)
		if len(c.Data)%2 == 1 {
			body = append(body, 0)
		}
	}
	out := binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body)))
	return append(out, body...)
}

// Chunk is one RIFF chunk of a WebP file.
type Chunk struct {
	FourCC string
	Data   []byte
}

// WebPChunks parses a RIFF WebP file into its chunks.
func WebPChunks(b []byte) ([]Chunk, error) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return nil, errors.New("not a RIFF WebP file")
	}
	var out []Chunk
	for p := 12; p+8 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[p+4:]))
		if p+8+n > len(b) {
			return nil, fmt.Errorf("chunk %q runs past the end", b[p:p+4])
		}
		out = append(out, Chunk{FourCC: string(b[p : p+4]), Data: b[p+8 : p+8+n]})
		p += 8 + n + n%2
	}
	return out, nil
}

// VP8X is the extended-format header chunk for a w×h canvas; alpha sets
// its alpha flag.
func VP8X(w, h int, alpha bool) Chunk {
	d := make([]byte, 10)
	if alpha {
		d[0] = 0x10
	}
	put24 := func(p []byte, v int) { p[0], p[1], p[2] = byte(v), byte(v>>8), byte(v>>16) }
	put24(d[4:], w-1)
	put24(d[7:], h-1)
	return Chunk{"VP8X", d}
}

// RawALPH is an ALPH chunk with uncompressed, unfiltered alpha values,
// one byte per pixel in raster order.
func RawALPH(alpha []byte) Chunk { return Chunk{"ALPH", append([]byte{0}, alpha...)} }

// VP8L encodes img as a lossless WebP bitstream (the VP8L chunk's
// payload), the simplest valid way: no transforms, no colour cache, no
// backward references, one prefix-code group whose green, red, blue and
// alpha codes give every byte value an 8-bit code. Four bytes a pixel:
// keep images small.
func VP8L(img *image.NRGBA) []byte {
	b := img.Bounds()
	var w bitWriter
	w.bits(0x2f, 8) // signature
	w.bits(uint64(b.Dx()-1), 14)
	w.bits(uint64(b.Dy()-1), 14)
	w.bits(1, 1) // alpha is used
	w.bits(0, 3) // version 0
	w.bits(0, 1) // no transform
	w.bits(0, 1) // no colour cache
	w.bits(0, 1) // no meta prefix codes: one group
	// Green (256 literals + 24 length prefixes), red, blue, alpha: a
	// normal code whose code lengths are coded with a two-symbol
	// code-length code: "0" is length 0, "1" is length 8.
	for _, size := range []int{256 + 24, 256, 256, 256} {
		w.bits(0, 1) // normal code
		// Code-length code lengths are sent in the order 17, 18, 0, 1,
		// 2, 3, 4, 5, 16, 6, 7, 8, ...: twelve reach symbol 8.
		w.bits(12-4, 4)
		for _, l := range []uint64{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1} {
			w.bits(l, 3)
		}
		w.bits(0, 1) // max_symbol: the whole alphabet
		for s := range size {
			if s < 256 {
				w.bits(1, 1)
			} else {
				w.bits(0, 1)
			}
		}
	}
	// Distance: a simple code with one 1-bit symbol, never used.
	w.bits(1, 1) // simple
	w.bits(0, 1) // one symbol
	w.bits(0, 1) // 1-bit symbol
	w.bits(0, 1) // symbol 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			i := img.PixOffset(x, y)
			r, g, bl, a := img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3]
			for _, v := range []uint8{g, r, bl, a} {
				w.code(uint64(v), 8) // canonical: the code of byte v is v
			}
		}
	}
	return w.flush()
}

// bitWriter writes a VP8L bit stream: values least significant bit
// first, prefix codes most significant bit first.
type bitWriter struct {
	out  []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) bits(v uint64, n uint) {
	for i := range n {
		w.bit(v >> i & 1)
	}
}

func (w *bitWriter) code(c uint64, n uint) {
	for i := n; i > 0; i-- {
		w.bit(c >> (i - 1) & 1)
	}
}

func (w *bitWriter) bit(b uint64) {
	w.acc |= b << w.nacc
	if w.nacc++; w.nacc == 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.out = append(w.out, byte(w.acc))
	}
	return w.out
}
