package v4l2m2m

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/v4l2"
)

// FourCC is a V4L2 pixel format code.
type FourCC = v4l2.FourCC

// Codes the backend knows.
const (
	FourCCH264   = v4l2.FourCCH264
	FourCCFWHT   = v4l2.FourCCFWHT // vicodec's Fast Walsh Hadamard Transform
	FourCCYUV420 = v4l2.FourCCYUV420
	FourCCNV12   = v4l2.FourCCNV12
	FourCCYUYV   = v4l2.FourCCYUYV
	FourCCRGB24  = FourCC('R' | 'G'<<8 | 'B'<<16 | '3'<<24) // packed R, G, B: what vim2m takes
)

// RawFourCC is the V4L2 code of a media pixel format, 0 for an unknown one.
func RawFourCC(p media.PixelFormat) FourCC {
	if p == media.PixelFormatRGB24 { // only scalers see it; the camera path never does
		return FourCCRGB24
	}
	return v4l2.FromPixelFormat(p)
}

// rawPixelFormat is the media pixel format of a V4L2 raw code, PixelFormatUnknown for others.
func rawPixelFormat(f FourCC) media.PixelFormat {
	for _, p := range []media.PixelFormat{media.PixelFormatI420, media.PixelFormatNV12, media.PixelFormatYUYV, media.PixelFormatRGB24} {
		if RawFourCC(p) == f {
			return p
		}
	}
	return media.PixelFormatUnknown
}

// Memory selects how frames reach the encoder's OUTPUT queue.
type Memory int

const (
	// MemoryAuto imports the frame's DMABUF when it has one whose layout the encoder takes,
	// and copies into MMAP buffers otherwise. The choice is made on the first frame; a later
	// frame that needs the other kind reopens the device once.
	MemoryAuto Memory = iota
	// MemoryMMAP always copies frames into the encoder's own buffers.
	MemoryMMAP
	// MemoryDMABUF always imports Frame.DMABuf; a frame without one is an error.
	MemoryDMABUF
)

func (m Memory) String() string {
	switch m {
	case MemoryAuto:
		return "auto"
	case MemoryMMAP:
		return "mmap"
	case MemoryDMABUF:
		return "dmabuf"
	}
	return fmt.Sprintf("Memory(%d)", int(m))
}

// Options says which device to drive and how.
type Options struct {
	// Device is the encoder node, e.g. /dev/video11 (encoder/probe finds it).
	Device string
	// CodedFormat is what CAPTURE produces; 0 means H.264.
	CodedFormat FourCC
	// InputFormat is the layout of the frames Encode will get (the camera's). The OUTPUT
	// queue takes it when the device does, else I420 and frames are converted.
	InputFormat media.PixelFormat
	Memory      Memory
	// Timeout bounds each wait for the device (a dequeued buffer); past it the device is
	// considered wedged and reopened. 0 means 2 s.
	Timeout time.Duration
	// OutputBuffers and CaptureBuffers are requested from VIDIOC_REQBUFS; 0 means 4. With
	// DMABUF at least 8 OUTPUT slots are used, so each of the camera's buffers keeps its own
	// slot and the kernel keeps its import.
	OutputBuffers, CaptureBuffers int
	// IQP and PQP, when positive, set the quantizers of I and P frames (H.264 or FWHT).
	IQP, PQP int
	Log      *slog.Logger
}

// ErrReopening is wrapped by the error Encode returns for frames dropped while a failed device
// waits to be reopened.
var ErrReopening = errors.New("v4l2m2m: encoder failed; reopening")

// ErrWedged is wrapped when the device returned nothing within Options.Timeout.
var ErrWedged = errors.New("v4l2m2m: device wedged: no buffer back in time")

// Stats counts what an Encoder did over its life.
type Stats struct {
	Frames       uint64 // frames queued to the device
	Encoded      uint64 // access units returned
	Copies       uint64 // CPU copies of raw frames into OUTPUT buffers (a conversion counts as one)
	DMABufFrames uint64 // frames imported without a copy
	Dropped      uint64 // frames dropped: device failed or reopening
	BufferErrors uint64 // CAPTURE buffers the driver flagged V4L2_BUF_FLAG_ERROR
	Failures     uint64 // device failures (each leads to a reopen)
	Reopens      uint64 // successful reopens after a failure
	Resets       uint64 // Reset sequences (STREAMOFF/STREAMON of CAPTURE)
}

// ControlStatus is what happened to one control at start or since.
type ControlStatus struct {
	Name      string
	Supported bool
	Value     int64 // what was set, when supported
	Note      string
}

// ScalerOptions says which memory-to-memory scaler to drive and how.
type ScalerOptions struct {
	// Device is the scaler node, e.g. /dev/video12 (encoder/probe finds it).
	Device string
	// OutputFormat is the layout Scale returns; PixelFormatUnknown means the input's when the
	// device produces it, else the first of I420, NV12 and YUYV it does.
	OutputFormat media.PixelFormat
	// Timeout bounds the wait for each scaled picture; 0 means 2 s.
	Timeout time.Duration
	Log     *slog.Logger
}

// ErrScalerSize is wrapped when the device cannot take or make the sizes asked for (it
// adjusted the format): the caller scales in software instead.
var ErrScalerSize = errors.New("v4l2m2m scaler: the device does not scale between these sizes")

// ScalerStats counts what a Scaler did over its life.
type ScalerStats struct {
	Frames   uint64 // pictures scaled
	Copies   uint64 // CPU copies of source frames into OUTPUT buffers
	Sessions uint64 // times the device was set up (a new input or output size reconfigures it)
}
