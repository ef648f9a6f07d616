// Package camera captures raw frames from a V4L2 video capture device (USB UVC or a CSI pipeline).
//
// Open negotiates a mode (pixel format, size, frame rate) from what the device offers and
// logs the choice and why; Run streams frames from the kernel's mmap buffers into a callback,
// each with the kernel's capture timestamp and, where the driver can export it, the buffer as
// a DMABUF. Source wraps this for a pipeline: it opens the device for every Run, so a retried
// Run survives an unplugged and replugged camera. blackjack/webcam enumerates what a device
// offers; format, rate and streaming are V4L2 ioctls of this package, on the descriptor that
// owns the buffers. Linux only: elsewhere Open and Run return errors wrapping
// errors.ErrUnsupported.
package camera

import "github.com/edgeflux/edge/internal/media"

// Config says which device to open and what is wanted from it.
type Config struct {
	Device string // e.g. "/dev/video0"; "" or "auto" takes the first of Discover
	Format string // "auto", "yuyv", "nv12", "i420" ("yu12" is accepted as i420)
	// Wanted size and rate; the closest the device offers is chosen. All must be positive.
	Width, Height, FPS int
}

// Mode is what was negotiated.
type Mode struct {
	Format        media.PixelFormat
	Width, Height int
	FPS           int // as the driver reports it after setting, rounded
}

// Stats counts what Run has done over the camera's life (a Source's: over all its opens).
type Stats struct {
	Frames       uint64 // handed to emit
	ShortBuffers uint64 // dequeued buffers too small for the mode: skipped, still numbered
	ErrorBuffers uint64 // dequeued buffers flagged V4L2_BUF_FLAG_ERROR: skipped, still numbered
	Dropped      uint64 // frames the driver's sequence numbers skipped (no free buffer, or late)
	Untimed      uint64 // frames handed to emit without a usable kernel timestamp (see CaptureTime)
}
