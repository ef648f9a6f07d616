// Package encoder defines the contract every H.264 encoder backend meets, so the pipeline can
// drive a hardware encoder (V4L2 memory-to-memory) and the software fallback the same way.
// Backends live in sub-packages, one per implementation; cgo stays inside them.
package encoder

import (
	"time"

	"github.com/edgeflux/edge/internal/media"
)

// Config is what a backend is opened with.
type Config struct {
	Width, Height int
	FPS           int
	BitrateBps    int
	// KeyframeInterval is the longest time between two IDR pictures; viewers that lose a
	// keyframe request still recover within it.
	KeyframeInterval time.Duration
}

// Encoder turns raw frames into H.264 access units that browsers can play: constrained
// baseline, no B-frames, SPS and PPS in front of every IDR.
//
// An Encoder is driven from one goroutine: none of its methods are safe for concurrent use.
type Encoder interface {
	// Encode compresses one frame. The access unit's Data is empty when the encoder skipped the
	// frame, and stays valid only until the next call.
	Encode(f *media.Frame) (media.AccessUnit, error)
	// RequestKeyframe makes the next encoded frame an IDR picture.
	RequestKeyframe()
	// SetBitrate changes the target bitrate without restarting the stream.
	SetBitrate(bps int) error
	// Name says which backend this is, for logs and the status page.
	Name() string
	Close() error
}
