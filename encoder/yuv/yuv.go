// Package yuv converts raw camera layouts to planar I420, the input of software encoders.
// Hardware encoders take the camera's layout directly and never come through here.
package yuv

import (
	"fmt"

	"github.com/edgeflux/edge/internal/media"
)

// I420 is a reusable planar picture with tightly packed planes.
type I420 struct {
	Width, Height int
	Y, U, V       []byte
}

// Resize makes b hold a w x h picture, reusing its memory when it is large enough.
func (b *I420) Resize(w, h int) {
	if b.Width == w && b.Height == h {
		return
	}
	cw, ch := (w+1)/2, (h+1)/2
	need := w*h + 2*cw*ch
	buf := b.Y[:cap(b.Y)] // the planes share one allocation that starts at Y
	if cap(buf) < need {
		buf = make([]byte, need)
	}
	b.Width, b.Height = w, h
	b.Y = buf[:w*h]
	b.U = buf[w*h : w*h+cw*ch]
	b.V = buf[w*h+cw*ch : need]
}

// Convert writes f into dst as I420. It is one pass over the source: the only CPU copy of a
// frame on the software path.
func Convert(dst *I420, f *media.Frame) error {
	w, h := f.Width, f.Height
	if w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 {
		return fmt.Errorf("convert %dx%d %v: size must be positive and even", w, h, f.Format)
	}
	dst.Resize(w, h)
	cw := w / 2
	switch f.Format {
	case media.PixelFormatI420:
		if err := checkPlanes(f, [3]int{w, cw, cw}, [3]int{h, h / 2, h / 2}); err != nil {
			return err
		}
		copyPlane(dst.Y, w, f.Planes[0], f.Strides[0], w, h)
		copyPlane(dst.U, cw, f.Planes[1], f.Strides[1], cw, h/2)
		copyPlane(dst.V, cw, f.Planes[2], f.Strides[2], cw, h/2)
	case media.PixelFormatNV12:
		if err := checkPlanes(f, [3]int{w, w}, [3]int{h, h / 2}); err != nil {
			return err
		}
		copyPlane(dst.Y, w, f.Planes[0], f.Strides[0], w, h)
		for row := 0; row < h/2; row++ {
			uv := f.Planes[1][row*f.Strides[1] : row*f.Strides[1]+w]
			u, v := dst.U[row*cw:(row+1)*cw], dst.V[row*cw:(row+1)*cw]
			for i := range cw {
				u[i], v[i] = uv[2*i], uv[2*i+1]
			}
		}
	case media.PixelFormatYUYV:
		if err := checkPlanes(f, [3]int{2 * w}, [3]int{h}); err != nil {
			return err
		}
		// 4:2:2 to 4:2:0: chroma of the even row of each pair; averaging two rows costs a
		// second read of the source for a difference no viewer sees at these sizes.
		for row := range h {
			src := f.Planes[0][row*f.Strides[0] : row*f.Strides[0]+2*w]
			y := dst.Y[row*w : (row+1)*w]
			for i := range w {
				y[i] = src[2*i]
			}
			if row%2 == 0 {
				u, v := dst.U[row/2*cw:(row/2+1)*cw], dst.V[row/2*cw:(row/2+1)*cw]
				for i := range cw {
					u[i], v[i] = src[4*i+1], src[4*i+3]
				}
			}
		}
	default:
		return fmt.Errorf("convert %v to I420: unsupported pixel format", f.Format)
	}
	return nil
}

// checkPlanes makes sure each plane holds rows of at least minStride bytes so that slicing
// below cannot go out of range on a short or odd kernel buffer.
func checkPlanes(f *media.Frame, rowBytes, rows [3]int) error {
	for i := range rowBytes {
		if rowBytes[i] == 0 {
			continue
		}
		if f.Strides[i] < rowBytes[i] || len(f.Planes[i]) < f.Strides[i]*(rows[i]-1)+rowBytes[i] {
			return fmt.Errorf("convert %v %dx%d: plane %d too small (%d bytes, stride %d)",
				f.Format, f.Width, f.Height, i, len(f.Planes[i]), f.Strides[i])
		}
	}
	return nil
}

func copyPlane(dst []byte, dstStride int, src []byte, srcStride, w, h int) {
	if dstStride == srcStride && len(src) >= w*h {
		copy(dst[:w*h], src[:w*h])
		return
	}
	for row := range h {
		copy(dst[row*dstStride:row*dstStride+w], src[row*srcStride:row*srcStride+w])
	}
}
