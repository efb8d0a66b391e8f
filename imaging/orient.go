package imaging

import "image"

// orient returns m turned upright for an EXIF orientation 1..8. m is one
// of the working layouts with bounds at the origin; orientation 1 returns
// m itself.
//
// The eight values, as the transform that shows the stored pixels right:
// 1 none, 2 mirror left-right, 3 rotate 180°, 4 mirror top-bottom,
// 5 transpose, 6 rotate 90° clockwise, 7 transverse, 8 rotate 90°
// counter-clockwise.
func orient(m image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return m
	}
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	dw, dh := orientedSize(w, h, o)
	switch m := m.(type) {
	case *image.Gray:
		d := image.NewGray(image.Rect(0, 0, dw, dh))
		orientPlane(d.Pix, d.Stride, m.Pix, w, h, m.Stride, 1, o)
		return d
	case *image.RGBA:
		d := image.NewRGBA(image.Rect(0, 0, dw, dh))
		orientPlane(d.Pix, d.Stride, m.Pix, w, h, m.Stride, 4, o)
		return d
	case *image.YCbCr:
		return orientYCbCr(m, o)
	}
	return m // unreachable for working layouts
}

func orientedSize(w, h, o int) (int, int) {
	if o >= 5 {
		return h, w
	}
	return w, h
}

func orientYCbCr(m *image.YCbCr, o int) *image.YCbCr {
	ratio := m.SubsampleRatio
	if o >= 5 {
		switch ratio {
		case image.YCbCrSubsampleRatio422:
			ratio = image.YCbCrSubsampleRatio440
		case image.YCbCrSubsampleRatio440:
			ratio = image.YCbCrSubsampleRatio422
		case image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410:
			// Their transposes do not exist in image.YCbCr.
			m, ratio = to444(m), image.YCbCrSubsampleRatio444
		}
	}
	w, h := m.Rect.Dx(), m.Rect.Dy()
	dw, dh := orientedSize(w, h, o)
	d := image.NewYCbCr(image.Rect(0, 0, dw, dh), ratio)
	orientPlane(d.Y, d.YStride, m.Y, w, h, m.YStride, 1, o)
	cw, ch := chromaSize(w, h, m.SubsampleRatio)
	orientPlane(d.Cb, d.CStride, m.Cb, cw, ch, m.CStride, 1, o)
	orientPlane(d.Cr, d.CStride, m.Cr, cw, ch, m.CStride, 1, o)
	return d
}

// chromaSize is the size of the Cb and Cr planes of a w×h image at the
// origin, as image.NewYCbCr lays them out.
func chromaSize(w, h int, r image.YCbCrSubsampleRatio) (int, int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// chromaScale is how many luma samples one chroma sample spans.
func chromaScale(r image.YCbCrSubsampleRatio) (sx, sy int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return 2, 1
	case image.YCbCrSubsampleRatio420:
		return 2, 2
	case image.YCbCrSubsampleRatio440:
		return 1, 2
	case image.YCbCrSubsampleRatio411:
		return 4, 1
	case image.YCbCrSubsampleRatio410:
		return 4, 2
	}
	return 1, 1
}

func to444(m *image.YCbCr) *image.YCbCr {
	b := m.Rect
	d := image.NewYCbCr(b, image.YCbCrSubsampleRatio444)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		copy(d.Y[d.YOffset(b.Min.X, y):][:b.Dx()], m.Y[m.YOffset(b.Min.X, y):][:b.Dx()])
		for x := b.Min.X; x < b.Max.X; x++ {
			s, t := m.COffset(x, y), d.COffset(x, y)
			d.Cb[t], d.Cr[t] = m.Cb[s], m.Cr[s]
		}
	}
	return d
}

// orientPlane writes into dst the w×h plane src of bpp-byte pixels,
// transformed for orientation o. Destination pixel (dx, dy) reads source
// index origin + dx*ax + dy*ay; the loops run in tiles so that the
// transposing orientations do not stride through memory a row at a time.
func orientPlane(dst []byte, dstride int, src []byte, w, h, sstride, bpp, o int) {
	if w == 0 || h == 0 {
		return
	}
	last := (h-1)*sstride + (w-1)*bpp // the last pixel of the last row
	var origin, ax, ay int
	switch o {
	case 2:
		origin, ax, ay = (w-1)*bpp, -bpp, sstride
	case 3:
		origin, ax, ay = last, -bpp, -sstride
	case 4:
		origin, ax, ay = (h-1)*sstride, bpp, -sstride
	case 5:
		origin, ax, ay = 0, sstride, bpp
	case 6:
		origin, ax, ay = (h-1)*sstride, -sstride, bpp
	case 7:
		origin, ax, ay = last, -sstride, -bpp
	case 8:
		origin, ax, ay = (w-1)*bpp, sstride, -bpp
	default:
		origin, ax, ay = 0, bpp, sstride
	}
	dw, dh := orientedSize(w, h, o)
	const tile = 64
	for ty := 0; ty < dh; ty += tile {
		for tx := 0; tx < dw; tx += tile {
			xe, ye := min(tx+tile, dw), min(ty+tile, dh)
			for dy := ty; dy < ye; dy++ {
				s := origin + dy*ay + tx*ax
				row := dst[dy*dstride+tx*bpp : dy*dstride+xe*bpp]
				if bpp == 1 {
					for i := range row {
						row[i] = src[s]
						s += ax
					}
					continue
				}
				for i := 0; i < len(row); i += bpp {
					copy(row[i:i+bpp], src[s:s+bpp])
					s += ax
				}
			}
		}
	}
}
