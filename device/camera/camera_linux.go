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

	"github.com/blackjack/webcam"
	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/internal/media"

	"github.com/edgeflux/edge/internal/v4l2"
)

const (
	// bufferCount is how many mmap buffers the kernel fills in turn: one being read by emit,
	// the rest absorb jitter in how long emit takes.
	bufferCount = 4
	// stallAfter is how long Run waits for a frame before giving up with ErrStalled; running
	// it again restarts streaming, which revives a stuck sensor or UVC stream.
	stallAfter = 10 * time.Second
	// maxBadBuffers is how many unusable buffers in a row (flagged V4L2_BUF_FLAG_ERROR, or
	// short) make Run give up with ErrBadBuffers, so that a retry resets the stream.
	maxBadBuffers = 10
	// maxSeqStep is the largest jump of the driver's sequence number taken as dropped
	// frames; a larger one (or one backwards) is a driver that restarted counting.
	maxSeqStep = 1 << 16
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

	seq          uint64 // the next Frame.Seq if no frame is dropped; owned by the running Run
	frames       atomic.Uint64
	shortBuffers atomic.Uint64
	errorBuffers atomic.Uint64
	dropped      atomic.Uint64
	untimed      atomic.Uint64
}

// stream is the kernel capture queue that Run drives (mmapStream; fakes in tests).
type stream interface {
	start() error
	// wait blocks until a buffer is ready (true), or until about a second passes or
	// interrupt is called (false).
	wait() (bool, error)
	// interrupt wakes a wait; safe from any goroutine.
	interrupt()
	dequeue() (dequeued, error)
	requeue(index uint32) error
	stop() error
	close() error
}

// dequeued is one filled buffer, owned by the caller until requeued.
type dequeued struct {
	data    []byte // the mmap'd buffer, bytesused long
	index   uint32
	seq     uint32    // the driver's frame counter: a jump means it dropped frames
	at      time.Time // when the picture was taken
	untimed bool      // the driver gave no usable timestamp: at is when it was dequeued
	failed  bool      // flagged V4L2_BUF_FLAG_ERROR: the contents are not to be trusted
	dmabuf  *media.DMABuf
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

// openDevice negotiates on one descriptor, which then streams. blackjack/webcam enumerates
// what the device offers on a second, short-lived descriptor: it keeps its own descriptor
// private and drops the buffer timestamps, so format, rate and streaming are set here, on
// the descriptor that owns the buffers.
func openDevice(dev string, cfg Config, log *slog.Logger) (*Camera, error) {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(dev, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	vc, err := v4l2.QueryCap(fd)
	if err != nil {
		return nil, fmt.Errorf("camera: open %s: %w: not a V4L2 device (VIDIOC_QUERYCAP: %w)", dev, ErrNotCapture, err)
	}
	caps := nodeCaps(vc.Capabilities, vc.DeviceCaps)
	if kind := captureKind(caps); kind != "" {
		return nil, fmt.Errorf("camera: open %s: %w (%s)", dev, ErrNotCapture, kind)
	}
	if caps&capVideoCapture == 0 {
		return nil, fmt.Errorf("camera: open %s: %w", dev, ErrMultiplanar)
	}
	card := vc.Card

	cam, err := webcam.Open(dev)
	if err != nil {
		return nil, openError(dev, err)
	}
	o := enumerate(cam, fd)
	log.Debug("camera formats offered", "device", dev, "card", card, "offer", o.String())
	ch, err := negotiate(o, cfg)
	cam.Close() // only the streaming descriptor stays open
	if err != nil {
		return nil, fmt.Errorf("camera: negotiate %s (%s): %w", dev, card, err)
	}

	if err := setFormat(fd, ch.fourcc, ch.width, ch.height); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("camera: set format %s on %s: %w (is another process capturing from it?)", ch.fourcc, dev, err)
		}
		return nil, fmt.Errorf("camera: set format %s %dx%d on %s: %w", ch.fourcc, ch.width, ch.height, dev, err)
	}
	// Read back what the driver set, with its stride.
	pix, err := getFormat(fd)
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
	actual, err := setFrameRate(fd, fps)
	switch {
	case err != nil:
		log.Warn("camera frame rate not set; the driver picks it", "device", dev, "fps", fmtFPS(fps), "err", err)
	case math.Abs(actual-fps) > 0.01*fps:
		log.Warn("camera driver adjusted the frame rate", "device", dev, "asked", fmtFPS(fps), "set", fmtFPS(actual))
	}
	if actual > 0 {
		fps = actual
	}

	st, err := newMmapStream(kernel{}, fd, dev, log)
	if err != nil {
		return nil, fmt.Errorf("camera: %s: %w", dev, err)
	}
	c := &Camera{
		log:        log,
		device:     dev,
		mode:       Mode{Format: lay.format, Width: w, Height: h, FPS: int(math.Round(fps))},
		layout:     lay,
		stream:     st,
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

// enumerate collects what the device offers; ctl answers what blackjack cannot. Formats come
// sorted by code: blackjack returns them as a map, losing the driver's order. The offer's
// rates ask cam, so it must stay open while the offer is used.
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
	return Stats{Frames: c.frames.Load(), ShortBuffers: c.shortBuffers.Load(), ErrorBuffers: c.errorBuffers.Load(),
		Dropped: c.dropped.Load(), Untimed: c.untimed.Load()}
}

// Run captures until ctx is done, calling emit for every frame. The frame's memory is the
// kernel's mmap buffer: it is requeued only after emit returns, so nothing aliases a
// requeued buffer; the frame is valid only until emit returns. Frame.DMABuf, when the driver
// exports buffers, describes the same memory and is owned by the camera.
//
// Run returns nil when ctx is done, and otherwise an error wrapping the cause (e.g.
// ErrNoDevice and syscall.ENODEV when the camera was unplugged, ErrStalled, ErrBadBuffers).
// Run may be called again after it returns (streaming restarts), but not while it runs, and
// emit must not call Close. Frame.Seq keeps counting across runs.
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
		return c.failed("start streaming", err)
	}
	stopWake := context.AfterFunc(ctx, c.stream.interrupt)
	err = c.capture(ctx, emit)
	stopWake()
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
	var (
		f         media.Frame
		lastFrame = time.Now()
		bad       int    // unusable buffers in a row
		driverSeq uint32 // the previous buffer's sequence number
		started   bool   // a buffer was dequeued in this run
	)
	for {
		if ctx.Err() != nil {
			return nil
		}
		ready, err := c.stream.wait()
		if err != nil {
			return c.failed("wait for frame on", err)
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
			return c.failed("dequeue buffer on", err)
		}
		lastFrame = time.Now()
		// Every buffer takes a number, skipped ones too, and so do the frames the driver
		// says it dropped: the gap tells consumers.
		seq := c.seq
		if started {
			if gap := seqStep(driverSeq, b.seq) - 1; gap > 0 {
				seq += gap
				c.dropped.Add(gap)
			}
		}
		c.seq, driverSeq, started = seq+1, b.seq, true

		switch {
		case b.failed:
			bad++
			if n := c.errorBuffers.Add(1); n == 1 || n%100 == 0 {
				c.log.Warn("camera buffer flagged as failed by the driver; frame skipped", "device", c.device,
					"seq", seq, "failed_total", n)
			}
		case c.layout.fill(&f, b.data):
			bad = 0
			f.Seq, f.CaptureTime, f.DMABuf = seq, b.at, b.dmabuf
			emit(&f)
			c.frames.Add(1)
			if b.untimed {
				c.untimed.Add(1)
			}
			f.Planes, f.DMABuf = [3][]byte{}, nil // nothing of ours keeps pointing into the buffer
		default:
			bad++
			if n := c.shortBuffers.Add(1); n == 1 || n%100 == 0 {
				c.log.Warn("camera buffer too short; frame skipped", "device", c.device, "seq", seq,
					"bytes", len(b.data), "want", c.layout.size, "skipped_total", n)
			}
		}
		if err := c.stream.requeue(b.index); err != nil {
			return c.failed(fmt.Sprintf("requeue buffer %d on", b.index), err)
		}
		if bad >= maxBadBuffers {
			return fmt.Errorf("camera: %s: %w: the last %d buffers were flagged as failed or short",
				c.device, ErrBadBuffers, bad)
		}
	}
}

// seqStep is how far Frame.Seq moves from a buffer with driver sequence prev to one with
// next: the driver's step when it counts forward, so the frames it dropped show as a gap,
// else 1 (a driver that leaves the sequence at 0, or restarts counting).
func seqStep(prev, next uint32) uint64 {
	if d := next - prev; d > 0 && d <= maxSeqStep {
		return uint64(d)
	}
	return 1
}

// failed wraps a streaming error with the operation and the device, and with ErrNoDevice
// when the device went away.
func (c *Camera) failed(op string, err error) error {
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("camera: %s %s: %w (unplugged?): %w", op, c.device, ErrNoDevice, err)
	}
	return fmt.Errorf("camera: %s %s: %w", op, c.device, err)
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
		<-done // Run unmaps the buffers when it stops: no emit may still be reading them
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
	vc, err := v4l2.QueryCap(fd)
	if err != nil {
		return false
	}
	return captureKind(nodeCaps(vc.Capabilities, vc.DeviceCaps)) == ""
}
