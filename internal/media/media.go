// Package media holds the types that cross the boundaries of the pipeline: raw frames from a
// source (device/) into an encoder (encoder/), and encoded access units from an encoder into the
// edge (edge/). Each side imports this package and nothing of the other.
package media

import (
	"fmt"
	"time"
)

// PixelFormat is the memory layout of a raw frame.
type PixelFormat int

// Pixel formats a source may deliver.
const (
	PixelFormatUnknown PixelFormat = iota
	PixelFormatI420                // planar Y, U, V; chroma at half width and height
	PixelFormatNV12                // planar Y, then interleaved UV at half width and height
	PixelFormatYUYV                // packed 4:2:2, Y0 U Y1 V
	// PixelFormatRGB24 is packed R, G, B bytes. No camera path produces it; it exists for
	// scalers that only take RGB (the virtual board's vim2m) and the tests that check them.
	PixelFormatRGB24
)

func (p PixelFormat) String() string {
	switch p {
	case PixelFormatI420:
		return "I420"
	case PixelFormatNV12:
		return "NV12"
	case PixelFormatYUYV:
		return "YUYV"
	case PixelFormatRGB24:
		return "RGB24"
	default:
		return fmt.Sprintf("PixelFormat(%d)", int(p))
	}
}

// Frame is one raw picture. A frame handed to a callback is valid only until that callback
// returns: the memory may be a kernel buffer that is requeued right after, so a consumer that
// needs the pixels later must copy them.
type Frame struct {
	Format PixelFormat
	Width  int
	Height int
	// Planes holds one slice per plane in the order of Format (I420: Y, U, V; NV12: Y, UV;
	// YUYV: the packed plane). Strides are in bytes.
	Planes  [3][]byte
	Strides [3]int
	// Seq numbers frames from 0 in the order the source produced them; a gap means the source
	// (or the kernel below it) dropped frames.
	Seq uint64
	// CaptureTime is when the picture was taken, from the kernel buffer timestamp where the
	// source has one, converted to wall-clock time.
	CaptureTime time.Time
	// DMABuf, when not nil, is the frame's memory exported by the kernel (VIDIOC_EXPBUF), so a
	// hardware encoder can import it without a CPU copy. The source owns the descriptor.
	DMABuf *DMABuf
}

// DMABuf is a kernel buffer shared by file descriptor.
type DMABuf struct {
	FD     int
	Length int // bytes of the whole buffer, all planes
}

// AccessUnit is one encoded picture: H.264 NAL units in Annex-B byte-stream form.
type AccessUnit struct {
	Data []byte
	// Keyframe is true for an IDR access unit, which also carries SPS and PPS in front.
	Keyframe bool
	// FrameSeq and CaptureTime are copied from the frame the access unit was encoded from.
	FrameSeq    uint64
	CaptureTime time.Time
}
