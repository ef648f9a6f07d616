package camera

import (
	"fmt"

	"github.com/edgeflux/edge/internal/media"
)

// layout is where each plane of a frame sits in a single-planar V4L2 buffer. V4L2 puts the
// planes of NV12 and YU12 back to back, luma rows bytesperline apart and (for YU12) chroma
// rows half that; bytesperline may exceed the visible width, so strides come from the driver.
type layout struct {
	format        media.PixelFormat
	width, height int
	planes        int
	strides       [3]int
	offsets       [3]int
	lengths       [3]int
	size          int // bytes a buffer must hold
}

// newLayout computes the layout for the format the driver set. bytesPerLine is the luma (or
// packed) stride it reported; 0 means it did not say, and rows are then taken as tight.
func newLayout(f media.PixelFormat, width, height, bytesPerLine int) (layout, error) {
	if width <= 0 || height <= 0 || width > maxDim || height > maxDim {
		return layout{}, fmt.Errorf("layout %s %dx%d: size out of range", f, width, height)
	}
	cw, ch := (width+1)/2, (height+1)/2 // chroma size for 4:2:0
	var row int                         // bytes of picture in one luma (or packed) row
	switch f {
	case media.PixelFormatYUYV:
		row = 4 * cw // a macropixel (Y0 U Y1 V) covers two pixels
	case media.PixelFormatNV12:
		row = max(width, 2*cw) // the UV row shares the luma stride
	case media.PixelFormatI420:
		row = max(width, 2*cw) // the U and V rows have half the luma stride
	default:
		return layout{}, fmt.Errorf("layout %s: unsupported pixel format", f)
	}
	stride := bytesPerLine
	if stride == 0 {
		stride = row
	}
	if stride < row || stride > 8*maxDim {
		return layout{}, fmt.Errorf("layout %s %dx%d: bytesperline %d does not fit a row of %d bytes",
			f, width, height, stride, row)
	}

	l := layout{format: f, width: width, height: height}
	add := func(stride, rows int) {
		i := l.planes
		l.strides[i], l.offsets[i], l.lengths[i] = stride, l.size, stride*rows
		l.size += stride * rows
		l.planes++
	}
	add(stride, height)
	switch f {
	case media.PixelFormatNV12:
		add(stride, ch)
	case media.PixelFormatI420:
		add(stride/2, ch)
		add(stride/2, ch)
	}
	return l, nil
}

// fill points f's planes into buf and sets format and size. It returns false, leaving f
// alone, when buf is shorter than the layout needs (a truncated or errored buffer).
func (l layout) fill(f *media.Frame, buf []byte) bool {
	if len(buf) < l.size {
		return false
	}
	f.Format, f.Width, f.Height = l.format, l.width, l.height
	f.Planes, f.Strides = [3][]byte{}, [3]int{}
	for i := range l.planes {
		start, end := l.offsets[i], l.offsets[i]+l.lengths[i]
		// Capacity capped so an append by a consumer cannot write into the next plane.
		f.Planes[i] = buf[start:end:end]
		f.Strides[i] = l.strides[i]
	}
	return true
}
