package imaging

import (
	"image"
	"math"
	"runtime"
	"sync"
)

// The resizer is a separable convolution over 8-bit planes with integer
// weights. The kernel is Catmull-Rom (a sharp cubic, close to Lanczos-2)
// stretched by the downscale factor, so every source pixel contributes and
// nothing aliases; Variants chains it (each size from the next larger
// one), so a pass never shrinks by much more than 2× after the first.
//
// Each output row is made by a vertical pass over the source columns it
// needs, then a horizontal pass over that one row: the cheap vertical
// loop (one weight per row, streaming) runs on the many source columns,
// the costlier horizontal one only on output rows, and no intermediate
// image is allocated.
//
// Integer arithmetic and a fixed split of rows among goroutines make the
// result independent of scheduling: the same input gives the same bytes.

const (
	fixBits = 14
	fixOne  = 1 << fixBits
	support = 2.0 // Catmull-Rom's radius
)

func catmullRom(x float64) float64 {
	x = math.Abs(x)
	switch {
	case x < 1:
		return (1.5*x-2.5)*x*x + 1
	case x < 2:
		return ((-0.5*x+2.5)*x-4)*x + 2
	}
	return 0
}

// weights maps dn output samples onto an axis of sn source samples.
type weights struct {
	taps  int
	start []int   // first source sample of each output
	w     []int32 // taps weights per output, summing to fixOne
}

// makeWeights places output sample i at source coordinate
// off + (i+0.5)*scale (pixel centres are at +0.5). Samples beyond the
// edges repeat the edge pixel.
func makeWeights(sn, dn int, off, scale float64) *weights {
	fscale := max(scale, 1)
	radius := support * fscale
	taps := min(int(math.Ceil(2*radius))+1, sn)
	wt := &weights{taps: taps, start: make([]int, dn), w: make([]int32, dn*taps)}
	fw := make([]float64, taps)
	for i := range dn {
		center := off + (float64(i)+0.5)*scale
		lo := int(math.Ceil(center - radius - 0.5))
		hi := int(math.Floor(center + radius - 0.5))
		start := min(max(lo, 0), sn-taps)
		clear(fw)
		var sum float64
		for j := lo; j <= hi; j++ {
			k := catmullRom((float64(j) + 0.5 - center) / fscale)
			if k == 0 {
				continue
			}
			fw[min(max(j, 0), sn-1)-start] += k
			sum += k
		}
		if sum == 0 { // degenerate: take the nearest sample
			fw[min(max(int(center), start), start+taps-1)-start], sum = 1, 1
		}
		ws := wt.w[i*taps : (i+1)*taps]
		var total int32
		best := 0
		for k, f := range fw {
			ws[k] = int32(math.Round(f / sum * fixOne))
			total += ws[k]
			if ws[k] > ws[best] {
				best = k
			}
		}
		ws[best] += fixOne - total // exact unity gain: flat areas stay flat
		wt.start[i] = start
	}
	return wt
}

// plane is an 8-bit raster of ch interleaved channels.
type plane struct {
	pix    []byte
	w, h   int
	stride int
	ch     int
	premul bool // ch == 4 and premultiplied: clamp colour to alpha
}

// window is the part of a source plane to resample, in its pixels.
type window struct{ x, y, w, h float64 }

// resizePlane resamples window win of src into all of dst, splitting rows
// among workers goroutines.
func resizePlane(dst, src plane, win window, workers int) {
	wx := makeWeights(src.w, dst.w, win.x, win.w/float64(dst.w))
	wy := makeWeights(src.h, dst.h, win.y, win.h/float64(dst.h))
	x0 := wx.start[0] // the source columns the horizontal pass reads
	n := (wx.start[dst.w-1] + wx.taps - x0) * src.ch
	parallel(dst.h, workers, func(a, b int) {
		acc := make([]int32, n)
		row := make([]byte, n)
		for y := a; y < b; y++ {
			vpass(row, src, x0*src.ch, wy.start[y], wy.w[y*wy.taps:(y+1)*wy.taps], acc)
			out := dst.pix[y*dst.stride:][:dst.w*dst.ch]
			hpass(out, row, src.ch, wx, x0)
			if dst.premul {
				clampPremul(out)
			}
		}
	})
}

// parallel runs fn over [0,n) cut into at most workers contiguous ranges.
func parallel(n, workers int, fn func(a, b int)) {
	const minRows = 16 // below this a goroutine costs more than it saves
	workers = min(workers, (n+minRows-1)/minRows)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range workers {
		a, b := n*i/workers, n*(i+1)/workers
		wg.Go(func() { fn(a, b) })
	}
	wg.Wait()
}

func clamp8(v int32) uint8 {
	v = (v + fixOne/2) >> fixBits
	if uint32(v) > 255 {
		if v < 0 {
			return 0
		}
		return 255
	}
	return uint8(v)
}

// hpass filters one row horizontally; row starts at source column x0.
func hpass(out, row []byte, ch int, wt *weights, x0 int) {
	taps := wt.taps
	if ch == 1 {
		for x := range out {
			ws := wt.w[x*taps : (x+1)*taps]
			p := row[wt.start[x]-x0:][:len(ws)]
			var acc int32
			for k, w := range ws {
				acc += w * int32(p[k])
			}
			out[x] = clamp8(acc)
		}
		return
	}
	for x := 0; x < len(out)/4; x++ {
		ws := wt.w[x*taps : (x+1)*taps]
		p := row[4*(wt.start[x]-x0):][:4*len(ws)]
		var r, g, b, a int32
		for k, w := range ws {
			q := p[4*k : 4*k+4 : 4*k+4]
			r += w * int32(q[0])
			g += w * int32(q[1])
			b += w * int32(q[2])
			a += w * int32(q[3])
		}
		o := out[4*x : 4*x+4 : 4*x+4]
		o[0], o[1], o[2], o[3] = clamp8(r), clamp8(g), clamp8(b), clamp8(a)
	}
}

// vpass filters vertically the len(out) bytes at offset off of the source
// rows s, s+1, ... weighted by ws.
func vpass(out []byte, src plane, off, s int, ws []int32, acc []int32) {
	clear(acc)
	for k, w := range ws {
		if w == 0 {
			continue
		}
		row := src.pix[(s+k)*src.stride+off:][:len(acc)]
		for x, v := range row {
			acc[x] += w * int32(v)
		}
	}
	out = out[:len(acc)]
	for x, a := range acc {
		out[x] = clamp8(a)
	}
}

// clampPremul fixes premultiplied RGBA pixels whose colour the kernel's
// negative lobes pushed above their alpha, which is not a valid value.
func clampPremul(p []byte) {
	for i := 0; i+3 < len(p); i += 4 {
		a := p[i+3]
		p[i], p[i+1], p[i+2] = min(p[i], a), min(p[i+1], a), min(p[i+2], a)
	}
}

// resize returns the window win (in m's pixels) of working image m
// resampled to w×h, in the same layout.
func resize(m image.Image, win window, w, h int) image.Image {
	workers := runtime.GOMAXPROCS(0)
	switch m := m.(type) {
	case *image.Gray:
		d := image.NewGray(image.Rect(0, 0, w, h))
		resizePlane(grayPlane(d), grayPlane(m), win, workers)
		return d
	case *image.RGBA:
		d := image.NewRGBA(image.Rect(0, 0, w, h))
		resizePlane(rgbaPlane(d), rgbaPlane(m), win, workers)
		return d
	case *image.YCbCr:
		// Always 4:2:0: Go's JPEG encoder subsamples to it anyway, so
		// carrying more chroma down the cascade would be wasted work.
		d := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
		sw, sh := m.Rect.Dx(), m.Rect.Dy()
		resizePlane(plane{pix: d.Y, w: w, h: h, stride: d.YStride, ch: 1},
			plane{pix: m.Y, w: sw, h: sh, stride: m.YStride, ch: 1}, win, workers)
		// Chroma uses the luma mapping, in chroma units: a source chroma
		// sample spans cx×cy luma samples, an output one 2×2.
		cx, cy := chromaScale(m.SubsampleRatio)
		fx, fy := float64(cx), float64(cy)
		cwin := window{win.x / fx, win.y / fy, win.w / fx, win.h / fy}
		scw, sch := chromaSize(sw, sh, m.SubsampleRatio)
		dcw, dch := chromaSize(w, h, image.YCbCrSubsampleRatio420)
		for _, p := range [][2][]byte{{d.Cb, m.Cb}, {d.Cr, m.Cr}} {
			resizeChroma(plane{pix: p[0], w: dcw, h: dch, stride: d.CStride, ch: 1},
				plane{pix: p[1], w: scw, h: sch, stride: m.CStride, ch: 1}, cwin, float64(w)/2, float64(h)/2, workers)
		}
		return d
	}
	panic("imaging: resize of a non-working layout") // programmer error
}

// resizeChroma is resizePlane with the output mapped as if the chroma
// plane were exactly dw×dh (the luma size over the subsampling): an odd
// luma width gives a last chroma sample only half covered.
func resizeChroma(dst, src plane, win window, dw, dh float64, workers int) {
	win.w *= float64(dst.w) / dw
	win.h *= float64(dst.h) / dh
	resizePlane(dst, src, win, workers)
}

func grayPlane(m *image.Gray) plane {
	return plane{pix: m.Pix, w: m.Rect.Dx(), h: m.Rect.Dy(), stride: m.Stride, ch: 1}
}

func rgbaPlane(m *image.RGBA) plane {
	return plane{pix: m.Pix, w: m.Rect.Dx(), h: m.Rect.Dy(), stride: m.Stride, ch: 4, premul: true}
}
