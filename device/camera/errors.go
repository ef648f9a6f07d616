package camera

import "errors"

// Sentinel errors; match with errors.Is. Returned errors wrap them with the device and the
// operation, and wrap the underlying errno where there is one (e.g. syscall.ENODEV).
var (
	// ErrNoDevice: the device node does not exist (or went away), or Discover found none.
	ErrNoDevice = errors.New("no such video device")
	// ErrNotCapture: the node is not a streaming video capture device (an encoder, a
	// metadata node, an output device).
	ErrNotCapture = errors.New("not a video capture device")
	// ErrMultiplanar: the device captures only through the multi-planar API, which this
	// package does not speak yet.
	ErrMultiplanar = errors.New("multi-planar (VIDEO_CAPTURE_MPLANE) capture is not supported yet")
	// ErrNoSupportedFormat: the device offers no pixel format this package can deliver.
	ErrNoSupportedFormat = errors.New("no supported pixel format")
	// ErrMJPEGNotSupported: the device offers MJPEG but no raw format. Such errors also match
	// ErrNoSupportedFormat.
	ErrMJPEGNotSupported = errors.New("MJPEG is not supported yet")
	// ErrFormatNotOffered: Config.Format names a format the device does not offer.
	ErrFormatNotOffered = errors.New("pixel format not offered by the device")
	// ErrInvalidConfig: Config is unusable (unknown format name, non-positive size or rate).
	ErrInvalidConfig = errors.New("invalid camera config")
	// ErrStalled: streaming delivered no frame for too long. Run returns it so the caller
	// can run it again, which restarts streaming.
	ErrStalled = errors.New("camera delivered no frames")
	// ErrBadBuffers: the driver returned many buffers in a row flagged V4L2_BUF_FLAG_ERROR
	// (or too short). Run returns it so the caller can run it again, which resets the stream.
	ErrBadBuffers = errors.New("camera delivered only unusable buffers")
	// ErrModeChanged: a Source reopened its device and negotiated another picture size than
	// the one its stream was set up for (another camera was plugged in).
	ErrModeChanged = errors.New("camera picture size changed")
	// ErrRunning: Run was called while another Run on the same camera (or Source) is in
	// progress.
	ErrRunning = errors.New("camera is already running")
	// ErrClosed: the camera was closed.
	ErrClosed = errors.New("camera is closed")
)

// multiError is an error with its own message that matches several sentinels.
type multiError struct {
	msg  string
	errs []error
}

func (e *multiError) Error() string   { return e.msg }
func (e *multiError) Unwrap() []error { return e.errs }
