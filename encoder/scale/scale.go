// Package scale makes smaller pictures of raw frames in software, for the encodes of one
// camera at lower resolutions (simulcast layers) on boards without a hardware scaler.
//
// It is an area (box) filter: every output sample is the mean of the source samples it
// covers, weighted by how much of each it covers, which is what a downscale needs to avoid
// aliasing. Exact factors of 2 and 4 take a fast path of plain sums. I420, NV12, YUYV and
// RGB24 are scaled in their own layout (the output has the input's pixel format), channel by
// channel. A Scaler reuses its memory: after the first frame of a size, Scale allocates
// nothing.
package scale

import (
	"errors"
	"fmt"

	"github.com/edgeflux/edge/internal/media"
)

// ErrSize is wrapped when a size cannot be scaled: odd, not positive, or larger than the
// source (the scaler only makes pictures smaller or equal).
var ErrSize = errors.New("scale: unsupported size")

// Scaler scales frames into memory it owns. It is used from one goroutine at a time.
type Scaler struct {
	buf  []byte
	out  media.Frame
	acc  []uint32
	axes map[[2]int]*axis
}

// New returns a Scaler.
func New() *Scaler { return &Scaler{axes: map[[2]int]*axis{}} }

// Name says what scales, for logs and status.
func (s *Scaler) Name() string { return "software" }

// Close releases nothing: the Scaler holds only Go memory. It exists so a Scaler is
// interchangeable with a hardware one.
func (s *Scaler) Close() error { return nil }

// channel is one component of a plane: sample i of row r is at
// plane[r*stride + off + i*step].
type channel struct {
	plane       int
	off, step   int
	width, high int // samples per row, rows
}

// layout lists the channels of a w x h picture of format p.
func layout(p media.PixelFormat, w, h int) ([3]channel, error) {
	switch p {
	case media.PixelFormatI420:
		return [3]channel{{0, 0, 1, w, h}, {1, 0, 1, w / 2, h / 2}, {2, 0, 1, w / 2, h / 2}}, nil
	case media.PixelFormatNV12:
		return [3]channel{{0, 0, 1, w, h}, {1, 0, 2, w / 2, h / 2}, {1, 1, 2, w / 2, h / 2}}, nil
	case media.PixelFormatYUYV:
		return [3]channel{{0, 0, 2, w, h}, {0, 1, 4, w / 2, h}, {0, 3, 4, w / 2, h}}, nil
	case media.PixelFormatRGB24:
		return [3]channel{{0, 0, 3, w, h}, {0, 1, 3, w, h}, {0, 2, 3, w, h}}, nil
	}
	return [3]channel{}, fmt.Errorf("scale %v: unsupported pixel format", p)
}

// planeGeometry returns the bytes per row and rows of each plane of a tightly packed
// w x h picture of format p.
func planeGeometry(p media.PixelFormat, w, h int) (rowBytes, rows [3]int) {
	switch p {
	case media.PixelFormatI420:
		return [3]int{w, w / 2, w / 2}, [3]int{h, h / 2, h / 2}
	case media.PixelFormatNV12:
		return [3]int{w, w}, [3]int{h, h / 2}
	case media.PixelFormatYUYV:
		return [3]int{2 * w}, [3]int{h}
	case media.PixelFormatRGB24:
		return [3]int{3 * w}, [3]int{h}
	}
	return
}

// Scale returns f scaled to w x h in f's pixel format. The result and its memory belong to
// the Scaler and stay valid until the next call; Seq, CaptureTime are copied from f.
func (s *Scaler) Scale(f *media.Frame, w, h int) (*media.Frame, error) {
	if w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 || f.Width%2 != 0 || f.Height%2 != 0 || w > f.Width || h > f.Height {
		return nil, fmt.Errorf("%w: %dx%d to %dx%d (sizes must be even and positive, and not larger than the source)",
			ErrSize, f.Width, f.Height, w, h)
	}
	srcCh, err := layout(f.Format, f.Width, f.Height)
	if err != nil {
		return nil, err
	}
	rowBytes, rows := planeGeometry(f.Format, f.Width, f.Height)
	for i := range rowBytes {
		if rowBytes[i] == 0 {
			continue
		}
		if f.Strides[i] < rowBytes[i] || len(f.Planes[i]) < f.Strides[i]*(rows[i]-1)+rowBytes[i] {
			return nil, fmt.Errorf("scale %v %dx%d: plane %d too small (%d bytes, stride %d)",
				f.Format, f.Width, f.Height, i, len(f.Planes[i]), f.Strides[i])
		}
	}
	s.resize(f.Format, w, h)
	dstCh, _ := layout(f.Format, w, h)
	for i := range srcCh {
		sc, dc := srcCh[i], dstCh[i]
		s.channel(s.out.Planes[dc.plane], s.out.Strides[dc.plane], dc, f.Planes[sc.plane], f.Strides[sc.plane], sc)
	}
	s.out.Seq, s.out.CaptureTime = f.Seq, f.CaptureTime
	return &s.out, nil
}

// resize makes the output frame a tightly packed w x h picture of format p, reusing the
// buffer when it is large enough.
func (s *Scaler) resize(p media.PixelFormat, w, h int) {
	if s.out.Format == p && s.out.Width == w && s.out.Height == h {
		return
	}
	rowBytes, rows := planeGeometry(p, w, h)
	need := 0
	for i := range rowBytes {
		need += rowBytes[i] * rows[i]
	}
	if cap(s.buf) < need {
		s.buf = make([]byte, need)
	}
	s.buf = s.buf[:need]
	s.out = media.Frame{Format: p, Width: w, Height: h}
	off := 0
	for i := range rowBytes {
		n := rowBytes[i] * rows[i]
		if n == 0 {
			continue
		}
		s.out.Planes[i] = s.buf[off : off+n : off+n]
		s.out.Strides[i] = rowBytes[i]
		off += n
	}
}

// channel scales one channel of src into dst.
func (s *Scaler) channel(dst []byte, dstStride int, dc channel, src []byte, srcStride int, sc channel) {
	switch {
	case dc.width == sc.width && dc.high == sc.high:
		copyChannel(dst, dstStride, dc, src, srcStride, sc)
	case sc.width == 2*dc.width && sc.high == 2*dc.high:
		if sc.step == 1 && dc.step == 1 {
			half1(dst, dstStride, src, srcStride, dc.width, dc.high)
		} else {
			halfN(dst, dstStride, dc, src, srcStride, sc)
		}
	case sc.width == 4*dc.width && sc.high == 4*dc.high:
		if sc.step == 1 && dc.step == 1 {
			quarter1(dst, dstStride, src, srcStride, dc.width, dc.high)
		} else {
			quarterN(dst, dstStride, dc, src, srcStride, sc)
		}
	default:
		s.area(dst, dstStride, dc, src, srcStride, sc)
	}
}

func copyChannel(dst []byte, dstStride int, dc channel, src []byte, srcStride int, sc channel) {
	for y := range dc.high {
		d := dst[y*dstStride+dc.off:]
		r := src[y*srcStride+sc.off:]
		if dc.step == 1 && sc.step == 1 {
			copy(d[:dc.width], r[:dc.width])
			continue
		}
		for x := range dc.width {
			d[x*dc.step] = r[x*sc.step]
		}
	}
}

// half1 halves a planar channel: each output sample is the rounded mean of a 2x2 block.
func half1(dst []byte, dstStride int, src []byte, srcStride int, w, h int) {
	for y := range h {
		r0 := src[2*y*srcStride : 2*y*srcStride+2*w]
		r1 := src[(2*y+1)*srcStride : (2*y+1)*srcStride+2*w]
		d := dst[y*dstStride : y*dstStride+w]
		for x := range d {
			i := 2 * x
			d[x] = byte((uint(r0[i]) + uint(r0[i+1]) + uint(r1[i]) + uint(r1[i+1]) + 2) >> 2)
		}
	}
}

// halfN halves an interleaved channel.
func halfN(dst []byte, dstStride int, dc channel, src []byte, srcStride int, sc channel) {
	ss, ds := sc.step, dc.step
	for y := range dc.high {
		r0 := src[2*y*srcStride+sc.off:]
		r1 := src[(2*y+1)*srcStride+sc.off:]
		d := dst[y*dstStride+dc.off:]
		for x := range dc.width {
			i, j := 2*x*ss, (2*x+1)*ss
			d[x*ds] = byte((uint(r0[i]) + uint(r0[j]) + uint(r1[i]) + uint(r1[j]) + 2) >> 2)
		}
	}
}

// quarter1 quarters a planar channel: the rounded mean of each 4x4 block.
func quarter1(dst []byte, dstStride int, src []byte, srcStride int, w, h int) {
	for y := range h {
		base := 4 * y * srcStride
		r0 := src[base : base+4*w]
		r1 := src[base+srcStride : base+srcStride+4*w]
		r2 := src[base+2*srcStride : base+2*srcStride+4*w]
		r3 := src[base+3*srcStride : base+3*srcStride+4*w]
		d := dst[y*dstStride : y*dstStride+w]
		for x := range d {
			i := 4 * x
			a, b, c, e := r0[i:i+4:i+4], r1[i:i+4:i+4], r2[i:i+4:i+4], r3[i:i+4:i+4]
			sum := uint(a[0]) + uint(a[1]) + uint(a[2]) + uint(a[3]) +
				uint(b[0]) + uint(b[1]) + uint(b[2]) + uint(b[3]) +
				uint(c[0]) + uint(c[1]) + uint(c[2]) + uint(c[3]) +
				uint(e[0]) + uint(e[1]) + uint(e[2]) + uint(e[3])
			d[x] = byte((sum + 8) >> 4)
		}
	}
}

// quarterN quarters an interleaved channel.
func quarterN(dst []byte, dstStride int, dc channel, src []byte, srcStride int, sc channel) {
	ss, ds := sc.step, dc.step
	span := 3*ss + 1
	for y := range dc.high {
		d := dst[y*dstStride+dc.off:]
		for x := range dc.width {
			var sum uint
			for r := range 4 {
				i := (4*y+r)*srcStride + sc.off + 4*x*ss
				row := src[i : i+span : i+span]
				sum += uint(row[0]) + uint(row[ss]) + uint(row[2*ss]) + uint(row[3*ss])
			}
			d[x*ds] = byte((sum + 8) >> 4)
		}
	}
}

// weightBits is the precision of the area filter's weights: each axis's weights of one
// output sample sum to 1<<weightBits, so a two-axis sum of 8-bit samples stays in 32 bits.
const weightBits = 12

// axis is the area filter's table along one axis: output sample o covers the taps source
// samples from first[o], with weights w[o*taps:(o+1)*taps] (zero past the covered ones).
type axis struct {
	taps  int
	first []int
	w     []uint32
}

// newAxis computes the weights for src samples shrunk to dst (dst <= src). In units where a
// source sample is dst long and an output sample src long, the weight of a source sample is
// its overlap with the output sample, normalised to 1<<weightBits.
func newAxis(src, dst int) *axis {
	taps := 0
	for o := range dst {
		lo, hi := o*src, (o+1)*src // in units of 1/dst source samples
		taps = max(taps, (hi-1)/dst-lo/dst+1)
	}
	a := &axis{taps: taps, first: make([]int, dst), w: make([]uint32, dst*taps)}
	for o := range dst {
		lo, hi := o*src, (o+1)*src
		first, last := lo/dst, (hi-1)/dst
		// Keep the taps inside the source: shift the window left, the extra weights are 0.
		start := min(first, src-taps)
		ws := a.w[o*taps : (o+1)*taps]
		var sum uint32
		big := first - start
		for i := first; i <= last; i++ {
			overlap := min(hi, (i+1)*dst) - max(lo, i*dst)
			w := uint32((overlap<<weightBits + src/2) / src)
			ws[i-start] = w
			sum += w
			if w > ws[big] {
				big = i - start
			}
		}
		// Rounding may leave the sum off by a little: give the difference to the largest.
		ws[big] += 1<<weightBits - sum
		a.first[o] = start
	}
	return a
}

func (s *Scaler) axis(src, dst int) *axis {
	k := [2]int{src, dst}
	a, ok := s.axes[k]
	if !ok {
		a = newAxis(src, dst)
		s.axes[k] = a
	}
	return a
}

// area scales a channel by any factor with the area filter: a vertical pass accumulates the
// weighted source rows of one output row, a horizontal pass weighs the sums.
func (s *Scaler) area(dst []byte, dstStride int, dc channel, src []byte, srcStride int, sc channel) {
	ax, ay := s.axis(sc.width, dc.width), s.axis(sc.high, dc.high)
	if cap(s.acc) < sc.width {
		s.acc = make([]uint32, sc.width)
	}
	acc := s.acc[:sc.width]
	const round = 1 << (2*weightBits - 1)
	for y := range dc.high {
		// Vertical: the first source row with a weight sets the sums, the others add.
		set := true
		for k, w := range ay.w[y*ay.taps : (y+1)*ay.taps] {
			if w == 0 {
				continue
			}
			row := src[(ay.first[y]+k)*srcStride+sc.off:]
			switch {
			case sc.step == 1 && set:
				for x, v := range row[:len(acc)] {
					acc[x] = w * uint32(v)
				}
			case sc.step == 1:
				for x, v := range row[:len(acc)] {
					acc[x] += w * uint32(v)
				}
			case set:
				for x := range acc {
					acc[x] = w * uint32(row[x*sc.step])
				}
			default:
				for x := range acc {
					acc[x] += w * uint32(row[x*sc.step])
				}
			}
			set = false
		}
		// Horizontal, with the usual two and three taps unrolled.
		d := dst[y*dstStride+dc.off:]
		taps := ax.taps
		switch taps {
		case 2:
			for x := range dc.width {
				f := ax.first[x]
				a, w := acc[f:f+2:f+2], ax.w[2*x:2*x+2:2*x+2]
				d[x*dc.step] = byte((w[0]*a[0] + w[1]*a[1] + round) >> (2 * weightBits))
			}
		case 3:
			for x := range dc.width {
				f := ax.first[x]
				a, w := acc[f:f+3:f+3], ax.w[3*x:3*x+3:3*x+3]
				d[x*dc.step] = byte((w[0]*a[0] + w[1]*a[1] + w[2]*a[2] + round) >> (2 * weightBits))
			}
		default:
			for x := range dc.width {
				ws := ax.w[x*taps : x*taps+taps : x*taps+taps]
				part := acc[ax.first[x] : ax.first[x]+taps : ax.first[x]+taps]
				var sum uint32
				for i, w := range ws {
					sum += w * part[i]
				}
				d[x*dc.step] = byte((sum + round) >> (2 * weightBits))
			}
		}
	}
}
