package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/blackjack/webcam"
	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/internal/media"
)

const (
	// bufferCount is how many mmap buffers the kernel fills in turn: one being read by emit,
	// the rest absorb jitter in how long emit takes.
	bufferCount = 4
	// stallAfter is how long Run waits for a frame before giving up with ErrStalled; running
	// it again restarts streaming, which revives a stuck sensor or UVC stream.
	stallAfter = 10 * time.Second
)

// Camera is an open capture device with a negotiated mode.
type Camera struct {
	log        *slog.Logger
	device     string
	mode       Mode
	layout     layout
	stream     stream
	stallAfter time.Duration

	mu     sync.Mutex
	closed bool
	cancel context.CancelFunc // of the Run in progress, nil when none
	done   chan struct{}      // closed when that Run has stopped streaming

	seq          uint64 // next Frame.Seq; owned by the running Run
	frames       atomic.Uint64
	shortBuffers atomic.Uint64
}

// stream is the kernel capture queue that Run drives. The blackjack/webcam implementation
// below hides the kernel's buffer timestamp, sequence and flags; a replacement that talks to
// V4L2 directly (kernel timestamps, DMABUF export) only has to satisfy this.
type stream interface {
	start() error
	// wait blocks until a buffer is ready (true) or about a second passes (false).
	wait() (bool, error)
	dequeue() (dequeued, error)
	requeue(index uint32) error
	stop() error
	close() error
}

// dequeued is one filled buffer, owned by the caller until requeued.
type dequeued struct {
	data  []byte // the mmap'd buffer, bytesused long
	index uint32
	at    time.Time // when the picture was taken
}

// Open opens the device, negotiates format, size and frame rate, and logs the choice and why.
// Device "" or "auto" opens the first device of Discover that opens and negotiates.
// Errors name the device and match the sentinels of errors.go.
func Open(cfg Config, log *slog.Logger) (*Camera, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkConfig(cfg); err != nil {
		return nil, fmt.Errorf("camera: open %q: %w", cfg.Device, err)
	}
	if cfg.Device != "" && cfg.Device != "auto" {
		return openDevice(cfg.Device, cfg, log)
	}
	found := Discover()
	if len(found) == 0 {
		return nil, fmt.Errorf("camera: open: %w: no video capture device in /dev/video* (or none readable by this user)", ErrNoDevice)
	}
	// The first capture node is not always usable (a multi-planar ISP node, a camera that
	// only does MJPEG): take the first that opens.
	var errs []error
	for _, dev := range found {
		c, err := openDevice(dev, cfg, log)
		if err == nil {
			log.Info("camera auto-selected", "device", dev, "found", found)
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func openDevice(dev string, cfg Config, log *slog.Logger) (*Camera, error) {
	// A second descriptor for the queries blackjack/webcam does not offer (QUERYCAP's
	// per-node caps, G_FMT's actual size and stride); it never sets anything, so it never
	// takes the device's ownership away from the capture descriptor.
	ctl, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(dev, err)
	}
	defer unix.Close(ctl)
	vc, err := queryCap(ctl)
	if err != nil {
		return nil, fmt.Errorf("camera: open %s: %w: not a V4L2 device (VIDIOC_QUERYCAP: %w)", dev, ErrNotCapture, err)
	}
	caps := nodeCaps(vc.capabilities, vc.deviceCaps)
	if kind := captureKind(caps); kind != "" {
		return nil, fmt.Errorf("camera: open %s: %w (%s)", dev, ErrNotCapture, kind)
	}
	if caps&capVideoCapture == 0 {
		return nil, fmt.Errorf("camera: open %s: %w", dev, ErrMultiplanar)
	}
	card := cString(vc.card[:])

	cam, err := webcam.Open(dev)
	if err != nil {
		return nil, openError(dev, err)
	}
	ok := false
	defer func() {
		if !ok {
			cam.Close()
		}
	}()

	o := enumerate(cam, ctl)
	log.Debug("camera formats offered", "device", dev, "card", card, "offer", o.String())
	ch, err := negotiate(o, cfg)
	if err != nil {
		return nil, fmt.Errorf("camera: negotiate %s (%s): %w", dev, card, err)
	}

	if _, _, _, err := cam.SetImageFormat(webcam.PixelFormat(ch.fourcc), uint32(ch.width), uint32(ch.height)); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("camera: set format %s on %s: %w (is another process capturing from it?)", ch.fourcc, dev, err)
		}
		return nil, fmt.Errorf("camera: set format %s %dx%d on %s: %w", ch.fourcc, ch.width, ch.height, dev, err)
	}
	// blackjack's SetImageFormat returns the size asked for, not the one set: read it back,
	// with the stride, which it does not report at all.
	pix, err := getFormat(ctl)
	if err != nil {
		return nil, fmt.Errorf("camera: read back format of %s: %w", dev, err)
	}
	got := fourCC(pix.pixelformat)
	w, h := int(pix.width), int(pix.height)
	if got.pixelFormat() == media.PixelFormatUnknown {
		return nil, fmt.Errorf("camera: set format on %s: asked for %s, driver set %s: %w", dev, ch.fourcc, got, ErrNoSupportedFormat)
	}
	if got != ch.fourcc || w != ch.width || h != ch.height {
		log.Warn("camera driver adjusted the format", "device", dev,
			"asked", fmt.Sprintf("%s %dx%d", ch.fourcc, ch.width, ch.height),
			"set", fmt.Sprintf("%s %dx%d", got, w, h))
	}
	lay, err := newLayout(got.pixelFormat(), w, h, int(pix.bytesperline))
	if err != nil {
		return nil, fmt.Errorf("camera: %s: %w", dev, err)
	}
	// A buffer smaller than the layout would make every frame short: fail now, loudly.
	if pix.sizeimage != 0 && int(pix.sizeimage) < lay.size {
		return nil, fmt.Errorf("camera: %s: driver buffers hold %d bytes, %s %dx%d with stride %d needs %d",
			dev, pix.sizeimage, got, w, h, lay.strides[0], lay.size)
	}

	fps := ch.fps
	// Drivers without VIDIOC_S_PARM (many CSI pipelines) run at the sensor's rate.
	if err := cam.SetFramerate(float32(fps)); err != nil {
		log.Warn("camera frame rate not set; the driver picks it", "device", dev, "fps", fmtFPS(fps), "err", err)
	}
	if actual, err := cam.GetFramerate(); err == nil && actual > 0 {
		if math.Abs(float64(actual)-fps) > 0.01*fps {
			log.Warn("camera driver adjusted the frame rate", "device", dev, "asked", fmtFPS(fps), "set", fmtFPS(float64(actual)))
		}
		fps = float64(actual)
	}
	if err := cam.SetBufferCount(bufferCount); err != nil {
		return nil, fmt.Errorf("camera: set buffer count on %s: %w", dev, err)
	}

	c := &Camera{
		log:        log,
		device:     dev,
		mode:       Mode{Format: lay.format, Width: w, Height: h, FPS: int(math.Round(fps))},
		layout:     lay,
		stream:     webcamStream{cam},
		stallAfter: stallAfter,
	}
	log.Info("camera mode chosen", "device", dev, "card", card, "format", c.mode.Format.String(),
		"size", fmt.Sprintf("%dx%d", w, h), "fps", fmtFPS(fps), "stride", lay.strides[0], "reason", ch.reason)
	ok = true
	return c, nil
}

// openError says why a device node did not open, matching ErrNoDevice when it is not there.
func openError(dev string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("camera: open %s: %w: %w", dev, ErrNoDevice, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("camera: open %s: %w (is the user in the video group?)", dev, err)
	}
	return fmt.Errorf("camera: open %s: %w", dev, err)
}

// enumerate collects what the device offers. Formats come sorted by code: blackjack returns
// them as a map, losing the driver's order.
func enumerate(cam *webcam.Webcam, ctl int) offer {
	var o offer
	for _, code := range slices.Sorted(maps.Keys(cam.GetSupportedFormats())) {
		fo := formatOffer{fourcc: fourCC(code)}
		for i, s := range cam.GetSupportedFrameSizes(code) {
			if s == (webcam.FrameSize{}) {
				// blackjack returns continuous ranges empty; ask for this one ourselves.
				if r, err := enumFrameSize(ctl, uint32(code), uint32(i)); err == nil {
					fo.sizes = append(fo.sizes, r)
				}
				continue
			}
			fo.sizes = append(fo.sizes, sizeRange{
				minW: int(s.MinWidth), maxW: int(s.MaxWidth), stepW: int(s.StepWidth),
				minH: int(s.MinHeight), maxH: int(s.MaxHeight), stepH: int(s.StepHeight),
			})
		}
		o.formats = append(o.formats, fo)
	}
	// blackjack stops at a continuous interval range, so such devices list no rates and
	// negotiation asks for the wanted rate; Open reads back what the driver set.
	o.rates = func(f fourCC, w, h int) []rateRange {
		var rs []rateRange
		for _, r := range cam.GetSupportedFramerates(webcam.PixelFormat(f), uint32(w), uint32(h)) {
			rs = append(rs, rateRange{
				min:  fract{r.MinNumerator, r.MinDenominator},
				max:  fract{r.MaxNumerator, r.MaxDenominator},
				step: fract{r.StepNumerator, r.StepDenominator},
			})
		}
		return rs
	}
	return o
}

// Mode is what was negotiated.
func (c *Camera) Mode() Mode { return c.mode }

// Stats counts frames delivered and buffers skipped so far.
func (c *Camera) Stats() Stats {
	return Stats{Frames: c.frames.Load(), ShortBuffers: c.shortBuffers.Load()}
}

// Run captures until ctx is done, calling emit for every frame. The frame's memory is the
// kernel's mmap buffer: it is requeued only after emit returns, so nothing aliases a
// requeued buffer; the frame is valid only until emit returns.
//
// Run returns nil when ctx is done, and otherwise an error wrapping the cause (e.g.
// syscall.ENODEV when the camera was unplugged, or ErrStalled). Run may be called again
// after it returns (streaming restarts), but not while it runs, and emit must not call Close.
// Frame.Seq keeps counting across runs.
func (c *Camera) Run(ctx context.Context, emit func(*media.Frame)) error {
	if emit == nil {
		return fmt.Errorf("camera: run %s: nil emit", c.device)
	}
	ctx, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer c.end()

	if err := c.stream.start(); err != nil {
		return fmt.Errorf("camera: start streaming %s: %w", c.device, err)
	}
	err = c.capture(ctx, emit)
	if serr := c.stream.stop(); serr != nil {
		// After a device failure this fails too; that error is the one that matters.
		c.log.Debug("camera stop streaming failed", "device", c.device, "err", serr)
	}
	return err
}

func (c *Camera) begin(ctx context.Context) (context.Context, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("camera: run %s: %w", c.device, ErrClosed)
	}
	if c.cancel != nil {
		return nil, fmt.Errorf("camera: run %s: %w", c.device, ErrRunning)
	}
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	return ctx, nil
}

func (c *Camera) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel()
	close(c.done)
	c.cancel, c.done = nil, nil
}

// capture is Run's loop, between starting and stopping the stream.
func (c *Camera) capture(ctx context.Context, emit func(*media.Frame)) error {
	var f media.Frame
	lastFrame := time.Now()
	for {
		if ctx.Err() != nil {
			return nil
		}
		ready, err := c.stream.wait()
		if err != nil {
			return fmt.Errorf("camera: wait for frame on %s: %w", c.device, err)
		}
		if !ready {
			if d := time.Since(lastFrame); d >= c.stallAfter {
				return fmt.Errorf("camera: %s: %w for %s", c.device, ErrStalled, d.Round(time.Second))
			}
			continue
		}
		b, err := c.stream.dequeue()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // woken without a buffer; wait again
		}
		if err != nil {
			return fmt.Errorf("camera: dequeue buffer on %s: %w", c.device, err)
		}
		lastFrame = time.Now()
		seq := c.seq
		c.seq++ // a skipped buffer still takes a number: the gap tells consumers of the drop

		if c.layout.fill(&f, b.data) {
			f.Seq, f.CaptureTime = seq, b.at
			emit(&f)
			c.frames.Add(1)
			f.Planes = [3][]byte{} // nothing of ours keeps pointing into the buffer
		} else if n := c.shortBuffers.Add(1); n == 1 || n%100 == 0 {
			c.log.Warn("camera buffer too short; frame skipped", "device", c.device, "seq", seq,
				"bytes", len(b.data), "want", c.layout.size, "skipped_total", n)
		}
		if err := c.stream.requeue(b.index); err != nil {
			return fmt.Errorf("camera: requeue buffer %d on %s: %w", b.index, c.device, err)
		}
	}
}

// Close stops a Run in progress, waits for it, and closes the device. It is idempotent and
// safe from another goroutine, but not from inside emit.
func (c *Camera) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done // the buffers are unmapped on close: no emit may still be reading them
	}
	if err := c.stream.close(); err != nil {
		return fmt.Errorf("camera: close %s: %w", c.device, err)
	}
	return nil
}

// Discover lists /dev/video* nodes that are video capture devices (not m2m encoders, not
// metadata nodes), sorted. Nodes this user cannot open are left out.
func Discover() []string { return discover("/dev/video*") }

func discover(pattern string) []string {
	paths, _ := filepath.Glob(pattern) // the only error is a malformed pattern
	var found []string
	for _, p := range paths {
		if isCaptureNode(p) {
			found = append(found, p)
		}
	}
	sortDevices(found)
	return found
}

func isCaptureNode(path string) bool {
	// Read-only is enough to ask, and does not disturb a device another process streams from.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	vc, err := queryCap(fd)
	if err != nil {
		return false
	}
	return captureKind(nodeCaps(vc.capabilities, vc.deviceCaps)) == ""
}

// webcamStream is the stream on blackjack/webcam.
type webcamStream struct{ cam *webcam.Webcam }

func (s webcamStream) start() error { return s.cam.StartStreaming() }

func (s webcamStream) wait() (bool, error) {
	err := s.cam.WaitForFrame(1) // seconds; bounds how long a stalled Run takes to see ctx
	var timeout *webcam.Timeout
	if errors.As(err, &timeout) {
		return false, nil
	}
	return err == nil, err
}

func (s webcamStream) dequeue() (dequeued, error) {
	data, index, err := s.cam.GetFrame()
	// TODO(issue 3): kernel buffer timestamp. blackjack/webcam v0.6.1 drops the v4l2_buffer
	// timestamp (and sequence and flags) in GetFrame, so the closest we get is right after
	// VIDIOC_DQBUF returned.
	at := time.Now()
	return dequeued{data: data, index: index, at: at}, err
}

func (s webcamStream) requeue(index uint32) error { return s.cam.ReleaseFrame(index) }
func (s webcamStream) stop() error                { return s.cam.StopStreaming() }
func (s webcamStream) close() error               { return s.cam.Close() }

// The few V4L2 ioctls blackjack/webcam does not expose. Request codes use the generic
// _IOC encoding (arm, arm64, x86, riscv), as blackjack's own do.

const bufTypeVideoCapture = 1

type v4l2Capability struct {
	driver       [16]byte
	card         [32]byte
	busInfo      [32]byte
	version      uint32
	capabilities uint32
	deviceCaps   uint32
	reserved     [3]uint32
}

type v4l2PixFormat struct {
	width, height, pixelformat, field, bytesperline, sizeimage uint32
	colorspace, priv, flags, encoding, quantization, xferFunc  uint32
}

// v4l2Format is struct v4l2_format with the pix member of its union. The union holds
// pointers elsewhere, so it is pointer-aligned: 208 bytes on 64-bit, 204 on 32-bit.
type v4l2Format struct {
	typ uint32
	_   [0]uintptr
	pix v4l2PixFormat
	_   [200 - unsafe.Sizeof(v4l2PixFormat{})]byte
}

type v4l2FrmSizeEnum struct {
	index, pixelFormat, typ uint32
	// discrete: width, height; stepwise and continuous: min_width, max_width, step_width,
	// min_height, max_height, step_height
	u        [6]uint32
	reserved [2]uint32
}

const (
	frmSizeDiscrete   = 1
	frmSizeContinuous = 2
	frmSizeStepwise   = 3
)

// _IOC(dir, 'V', nr, size) with dir 2 = read, 3 = read and write.
const (
	vidiocQueryCap       = 2<<30 | unsafe.Sizeof(v4l2Capability{})<<16 | 'V'<<8 | 0
	vidiocGFmt           = 3<<30 | unsafe.Sizeof(v4l2Format{})<<16 | 'V'<<8 | 4
	vidiocEnumFrameSizes = 3<<30 | unsafe.Sizeof(v4l2FrmSizeEnum{})<<16 | 'V'<<8 | 74
)

func queryCap(fd int) (v4l2Capability, error) {
	var c v4l2Capability
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), vidiocQueryCap, uintptr(unsafe.Pointer(&c)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return c, e
		}
		return c, nil
	}
}

func getFormat(fd int) (v4l2PixFormat, error) {
	f := v4l2Format{typ: bufTypeVideoCapture}
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), vidiocGFmt, uintptr(unsafe.Pointer(&f)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return v4l2PixFormat{}, fmt.Errorf("VIDIOC_G_FMT: %w", e)
		}
		return f.pix, nil
	}
}

func enumFrameSize(fd int, code, index uint32) (sizeRange, error) {
	e := v4l2FrmSizeEnum{index: index, pixelFormat: code}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), vidiocEnumFrameSizes, uintptr(unsafe.Pointer(&e)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return sizeRange{}, fmt.Errorf("VIDIOC_ENUM_FRAMESIZES: %w", errno)
		}
		break
	}
	u := e.u
	switch e.typ {
	case frmSizeDiscrete:
		return discreteSize(int(u[0]), int(u[1])), nil
	case frmSizeContinuous, frmSizeStepwise:
		return sizeRange{minW: int(u[0]), maxW: int(u[1]), stepW: int(u[2]),
			minH: int(u[3]), maxH: int(u[4]), stepH: int(u[5])}, nil
	}
	return sizeRange{}, fmt.Errorf("VIDIOC_ENUM_FRAMESIZES: unknown type %d", e.typ)
}

func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
