package imaging

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"io"
)

// The metadata readers below parse hostile bytes: every offset is checked
// against the slice before use, and anything malformed yields "no
// metadata" (orientation 1, no profile) rather than an error, since a
// broken EXIF block must not cost the user their upload.

// meta is what Decode takes from a file besides its pixels.
type meta struct {
	orientation int // 1..8
	icc         []byte
	animated    bool // WebP ANIM/ANMF chunks seen
}

// maxICC bounds a profile. Every variant carries a copy, so a huge one
// would multiply storage; display profiles are a few KB, and even large
// print profiles are well under this.
const maxICC = 1 << 20

func readMeta(f Format, data []byte) meta {
	m := meta{orientation: 1}
	switch f {
	case JPEG:
		m.orientation, m.icc = jpegMeta(data)
	case PNG:
		m.orientation, m.icc = pngMeta(data)
	case WebP:
		m.orientation, m.icc, m.animated = webpMeta(data)
	}
	return m
}

// jpegSegments calls fn with each marker segment before the first SOS
// (start of scan) until fn returns false.
func jpegSegments(b []byte, fn func(marker byte, payload []byte) bool) {
	if len(b) < 2 || b[0] != 0xff || b[1] != 0xd8 {
		return
	}
	i := 2
	for {
		if i >= len(b) || b[i] != 0xff {
			return // junk between segments: stop rather than guess
		}
		for i < len(b) && b[i] == 0xff { // fill bytes
			i++
		}
		if i >= len(b) {
			return
		}
		marker := b[i]
		i++
		switch {
		case marker == 0xda || marker == 0xd9: // SOS, EOI
			return
		case marker == 0x01 || marker >= 0xd0 && marker <= 0xd8: // no length
			continue
		}
		if i+2 > len(b) {
			return
		}
		n := int(binary.BigEndian.Uint16(b[i:]))
		if n < 2 || i+n > len(b) {
			return
		}
		if !fn(marker, b[i+2:i+n]) {
			return
		}
		i += n
	}
}

// jpegMeta returns the orientation from the first APP1 Exif segment with a
// valid TIFF header and the ICC profile reassembled from APP2 chunks.
func jpegMeta(b []byte) (orientation int, icc []byte) {
	orientation = 1
	var chunks [256][]byte
	count, seen := 0, 0
	exifDone, iccBad := false, false
	jpegSegments(b, func(marker byte, p []byte) bool {
		switch {
		case marker == 0xe1 && !exifDone && bytes.HasPrefix(p, []byte("Exif\x00\x00")):
			if o, ok := exifOrientation(p[6:]); ok {
				orientation, exifDone = o, true
			}
		case marker == 0xe2 && bytes.HasPrefix(p, []byte(iccMagic)):
			if len(p) < len(iccMagic)+2 {
				iccBad = true
				return true
			}
			seq, n := int(p[len(iccMagic)]), int(p[len(iccMagic)+1])
			if seq == 0 || n == 0 || seq > n || (count != 0 && n != count) || chunks[seq] != nil {
				iccBad = true
				return true
			}
			count = n
			chunks[seq] = p[len(iccMagic)+2:]
			seen++
		}
		return true
	})
	if iccBad || count == 0 || seen != count {
		return orientation, nil
	}
	for _, c := range chunks[1 : count+1] {
		icc = append(icc, c...)
	}
	return orientation, validICC(icc)
}

// jpegFrameInfo is what the SOF segment says about decoding cost.
type jpegFrameInfo struct {
	progressive bool
	components  int
	planes8     int64 // samples per pixel over all components, in eighths
	hmax        int64 // the largest horizontal sampling factor: 4 is 4:1:1 or 4:1:0
}

func jpegFrame(b []byte) (fi jpegFrameInfo, ok bool) {
	jpegSegments(b, func(marker byte, p []byte) bool {
		// SOF0..SOF15 except DHT (c4), JPG (c8) and DAC (cc).
		if marker < 0xc0 || marker > 0xcf || marker == 0xc4 || marker == 0xc8 || marker == 0xcc {
			return true
		}
		if len(p) < 6 {
			return false
		}
		nc := int(p[5])
		if nc == 0 || len(p) < 6+3*nc {
			return false
		}
		var hmax, vmax int64 = 1, 1
		for c := range nc {
			hv := p[6+3*c+1]
			hmax, vmax = max(hmax, int64(hv>>4)), max(vmax, int64(hv&15))
		}
		fi.hmax = hmax
		fi.progressive = marker == 0xc2 || marker == 0xc6 || marker == 0xca || marker == 0xce
		fi.components = nc
		for c := range nc {
			hv := p[6+3*c+1]
			fi.planes8 += 8 * int64(hv>>4) * int64(hv&15) / (hmax * vmax)
		}
		ok = true
		return false
	})
	return fi, ok
}

// pngMeta reads the eXIf and iCCP chunks.
func pngMeta(b []byte) (orientation int, icc []byte) {
	orientation = 1
	const sigLen = 8
	for i := sigLen; i+8 <= len(b); {
		n := int64(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		end := int64(i) + 8 + n
		if end+4 > int64(len(b)) {
			break
		}
		data := b[i+8 : end]
		switch typ {
		case "eXIf":
			orientation = chunkOrientation(data, orientation)
		case "iCCP":
			icc = pngICC(data)
		case "IEND":
			return orientation, icc
		}
		i = int(end + 4) // skip the CRC
	}
	return orientation, icc
}

// pngICC inflates an iCCP payload: a 1-79 byte name, NUL, method 0, zlib.
// It allocates once, the size the profile header declares, so a zlib bomb
// costs no more than maxICC.
func pngICC(data []byte) []byte {
	nul := bytes.IndexByte(data, 0)
	if nul < 1 || nul > 79 || nul+2 > len(data) || data[nul+1] != 0 {
		return nil
	}
	zr, err := zlib.NewReader(bytes.NewReader(data[nul+2:]))
	if err != nil {
		return nil
	}
	defer zr.Close()
	var head [128]byte
	if _, err := io.ReadFull(zr, head[:]); err != nil {
		return nil
	}
	size := int64(binary.BigEndian.Uint32(head[:4]))
	if size < int64(len(head)) || size > maxICC {
		return nil
	}
	icc := make([]byte, size)
	copy(icc, head[:])
	if _, err := io.ReadFull(zr, icc[len(head):]); err != nil {
		return nil
	}
	return validICC(icc)
}

// webpMeta walks the RIFF chunks for EXIF, ICCP and animation.
func webpMeta(b []byte) (orientation int, icc []byte, animated bool) {
	orientation = 1
	const riffHeader = 12
	if len(b) < riffHeader {
		return orientation, nil, false
	}
	for i := riffHeader; i+8 <= len(b); {
		typ := string(b[i : i+4])
		n := int64(binary.LittleEndian.Uint32(b[i+4:]))
		end := int64(i) + 8 + n
		if end > int64(len(b)) {
			break
		}
		data := b[i+8 : end]
		switch typ {
		case "EXIF":
			orientation = chunkOrientation(data, orientation)
		case "ICCP":
			// A copy: a slice of data would keep the whole file alive.
			icc = validICC(bytes.Clone(data))
		case "ANIM", "ANMF":
			animated = true
		}
		i = int(end + end&1) // chunks are padded to even sizes
	}
	return orientation, icc, animated
}

// chunkOrientation reads the orientation from a PNG eXIf or WebP EXIF
// chunk: a bare TIFF structure, though some writers keep the JPEG
// "Exif\0\0" prefix. It returns current if the TIFF header is invalid.
func chunkOrientation(data []byte, current int) int {
	if o, ok := exifOrientation(bytes.TrimPrefix(data, []byte("Exif\x00\x00"))); ok {
		return o
	}
	return current
}

// exifOrientation reads tag 0x0112 from IFD0 of a TIFF structure. ok is
// false when the TIFF header is invalid; an absent or out-of-range value
// is orientation 1.
func exifOrientation(t []byte) (orientation int, ok bool) {
	if len(t) < 8 {
		return 1, false
	}
	var bo binary.ByteOrder
	switch string(t[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 1, false
	}
	ifd := int64(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > int64(len(t)) {
		return 1, true
	}
	n := int64(bo.Uint16(t[ifd:]))
	for e := ifd + 2; e+12 <= int64(len(t)) && e < ifd+2+12*n; e += 12 {
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		var v uint32
		switch typ, count := bo.Uint16(t[e+2:]), bo.Uint32(t[e+4:]); {
		case count != 1:
			return 1, true
		case typ == 3: // SHORT, the type the standard prescribes
			v = uint32(bo.Uint16(t[e+8:]))
		case typ == 4: // LONG, written by a few tools
			v = bo.Uint32(t[e+8:])
		default:
			return 1, true
		}
		if v < 1 || v > 8 {
			return 1, true
		}
		return int(v), true
	}
	return 1, true
}

// validICC returns p if it looks like an ICC profile (a 128-byte header
// with the "acsp" signature), else nil.
func validICC(p []byte) []byte {
	if len(p) < 128 || len(p) > maxICC || string(p[36:40]) != "acsp" {
		return nil
	}
	return p
}

// iccSpace is the profile's data colour space: "RGB ", "GRAY", "CMYK"...
func iccSpace(p []byte) string {
	if len(p) < 20 {
		return ""
	}
	return string(p[16:20])
}
