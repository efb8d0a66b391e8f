package imaging

import (
	"image"
	"image/draw"
)

// toWorking converts a decoded image to one of the three layouts the
// resizer and encoders handle without the generic At() path: *image.YCbCr
// and *image.Gray (opaque) or *image.RGBA (premultiplied), with bounds
// (0,0)-(w,h). w×h is the canvas from the header: a GIF's first frame may
// be smaller and is then placed on a transparent canvas. alpha reports a
// pixel that is not fully opaque.
func toWorking(m image.Image, w, h int) (work image.Image, alpha bool) {
	canvas := image.Rect(0, 0, w, h)
	if m.Bounds() == canvas {
		switch m := m.(type) {
		case *image.YCbCr:
			return m, false
		case *image.Gray:
			return m, false
		case *image.RGBA:
			// An RGB PNG or JPEG: opaque, so already premultiplied.
			return m, !m.Opaque()
		case *image.Gray16:
			g := image.NewGray(canvas)
			for y := range h {
				src := m.Pix[y*m.Stride:][: 2*w : 2*w]
				dst := g.Pix[y*g.Stride:][:w:w]
				for x := range dst {
					dst[x] = src[2*x] // the high byte
				}
			}
			return g, false
		case *image.NYCbCrA:
			if m.Opaque() {
				return &m.YCbCr, false
			}
		case *image.NRGBA:
			// Premultiply in place: a lossless WebP or RGBA PNG can be
			// large, and the NRGBA is not used again.
			return premultiply(m), !m.Opaque()
		}
	}
	rgba := image.NewRGBA(canvas)
	draw.Draw(rgba, m.Bounds(), m, m.Bounds().Min, draw.Src)
	return rgba, !rgba.Opaque()
}

func premultiply(m *image.NRGBA) *image.RGBA {
	for y := range m.Rect.Dy() {
		row := m.Pix[y*m.Stride:][: 4*m.Rect.Dx() : 4*m.Rect.Dx()]
		for i := 0; i+3 < len(row); i += 4 {
			a := uint32(row[i+3])
			if a == 0xff {
				continue
			}
			row[i] = uint8((uint32(row[i])*a + 127) / 255)
			row[i+1] = uint8((uint32(row[i+1])*a + 127) / 255)
			row[i+2] = uint8((uint32(row[i+2])*a + 127) / 255)
		}
	}
	return &image.RGBA{Pix: m.Pix, Stride: m.Stride, Rect: m.Rect}
}

// unpremultiply copies m into the NRGBA layout the PNG encoder writes
// without converting pixel by pixel through color.Color.
func unpremultiply(m *image.RGBA) *image.NRGBA {
	b := m.Bounds()
	n := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		src := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):][: 4*b.Dx() : 4*b.Dx()]
		dst := n.Pix[y*n.Stride:][: 4*b.Dx() : 4*b.Dx()]
		for i := 0; i+3 < len(src); i += 4 {
			a := uint32(src[i+3])
			switch a {
			case 0xff:
				copy(dst[i:i+4], src[i:i+4])
			case 0:
				// Fully transparent: colour is meaningless, keep it zero.
			default:
				dst[i] = uint8(min((uint32(src[i])*255+a/2)/a, 255))
				dst[i+1] = uint8(min((uint32(src[i+1])*255+a/2)/a, 255))
				dst[i+2] = uint8(min((uint32(src[i+2])*255+a/2)/a, 255))
				dst[i+3] = uint8(a)
			}
		}
	}
	return n
}
