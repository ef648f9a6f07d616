//go:build linux && cgo

package v4l2m2m

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/yuv"
	"github.com/edgeflux/edge/internal/h264"
	"github.com/edgeflux/edge/internal/media"
)

// ErrDeviceError is wrapped when poll reports an error on the queues (POLLERR): the driver
// stopped a queue or lost its buffers.
var ErrDeviceError = errors.New("v4l2m2m: device reports an error on its queues")

// Encoder drives one V4L2 memory-to-memory stateful encoder instance.
type Encoder struct {
	cfg   encoder.Config
	opts  Options
	codec FourCC
	log   *slog.Logger
	name  string

	s        *session // nil after a failure, until reopened
	failures int      // consecutive failures without an access unit since
	retryAt  time.Time
	lastErr  error
	nextID   uint64 // OUTPUT timestamps, unique over the encoder's life

	keyframe bool // RequestKeyframe was called
	sps, pps []byte
	ready    []media.AccessUnit // encoded, not yet returned; Data owned by the encoder
	out      []byte             // Data of the access unit last returned
	spare    [][]byte
	scratch  yuv.I420
	warned   map[string]bool
	controls map[control]ControlStatus
	stats    Stats
	closed   bool
}

var _ encoder.Encoder = (*Encoder)(nil)

// session is one open instance of the device.
type session struct {
	dev            *device
	outFmt, capFmt format
	convert        bool   // frames are converted to I420 on the way in
	memory         uint32 // OUTPUT memory once started: memoryMMAP or memoryDMABUF
	started        bool
	stopped        bool // a LAST buffer came back: the encoder waits for START
	draining       bool // V4L2_ENC_CMD_STOP sent, LAST not seen yet
	out, cap       []slot
	ctrls          map[control]ctrlInfo
	pending        map[uint64]pendingFrame
	prefix         []byte      // H.264 header-only CAPTURE data waiting for its picture
	dmaSlot        map[int]int // DMABUF descriptor -> OUTPUT index that imported it last
}

type slot struct {
	planes [][]byte // MMAP mappings
	queued bool     // owned by the driver
}

type pendingFrame struct {
	seq uint64
	at  time.Time
	out int // OUTPUT index
}

// New opens the encoder node in opts.Device, checks that it produces opts.CodedFormat and
// takes the input (directly or as I420), and configures formats, frame interval, crop and
// controls. Buffers are allocated and streaming starts on the first Encode, once it is known
// whether frames come as DMABUF.
func New(cfg encoder.Config, opts Options) (*Encoder, error) {
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.FPS <= 0 || cfg.BitrateBps <= 0 {
		return nil, fmt.Errorf("v4l2m2m: invalid config %+v", cfg)
	}
	if opts.Device == "" {
		return nil, errors.New("v4l2m2m: no device given")
	}
	if opts.CodedFormat == 0 {
		opts.CodedFormat = FourCCH264
	}
	if opts.InputFormat == media.PixelFormatUnknown {
		opts.InputFormat = media.PixelFormatI420
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.OutputBuffers <= 0 {
		opts.OutputBuffers = 4
	}
	if opts.CaptureBuffers <= 0 {
		opts.CaptureBuffers = 4
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	e := &Encoder{cfg: cfg, opts: opts, codec: opts.CodedFormat, log: opts.Log.With("device", opts.Device),
		warned: map[string]bool{}, controls: map[control]ControlStatus{}, nextID: 1}
	s, err := e.open()
	if err != nil {
		return nil, err
	}
	e.s = s
	e.name = fmt.Sprintf("v4l2m2m %s (%s, %v)", opts.Device, s.dev.card, e.codec)
	return e, nil
}

// Name implements encoder.Encoder.
func (e *Encoder) Name() string { return e.name }

// Stats returns the counters so far.
func (e *Encoder) Stats() Stats { return e.stats }

// Controls says which controls the driver has and what they were set to.
func (e *Encoder) Controls() []ControlStatus {
	var out []ControlStatus
	for c := range numControls {
		if st, ok := e.controls[c]; ok {
			out = append(out, st)
		}
	}
	return out
}

// OutputFormat reports the raw format the OUTPUT queue takes, its buffer size (aligned) and
// whether frames are converted to it; ok is false while the device is being reopened.
func (e *Encoder) OutputFormat() (fourcc FourCC, width, height int, convert, ok bool) {
	if e.s == nil {
		return 0, 0, 0, false, false
	}
	return e.s.outFmt.PixelFormat, int(e.s.outFmt.Width), int(e.s.outFmt.Height), e.s.convert, true
}

// warnOnce logs a warning the first time key is seen over the encoder's life, across
// reopens: a missing control is worth one line, not one per frame.
func (e *Encoder) warnOnce(key, msg string, args ...any) {
	if e.warned[key] {
		return
	}
	e.warned[key] = true
	e.log.Warn(msg, args...)
}

// open runs dev-encoder.rst's Initialization up to the buffer allocation.
func (e *Encoder) open() (*session, error) {
	d, err := openDevice(e.opts.Device)
	if err != nil {
		return nil, fmt.Errorf("v4l2m2m: %w", err)
	}
	s := &session{dev: d, pending: map[uint64]pendingFrame{}, dmaSlot: map[int]int{}}
	if err := e.configure(s); err != nil {
		s.abandon()
		return nil, fmt.Errorf("v4l2m2m: %w", err)
	}
	return s, nil
}

func (e *Encoder) configure(s *session) error {
	d, w, h := s.dev, e.cfg.Width, e.cfg.Height
	if !d.isM2M() {
		return fmt.Errorf("%s (%s) is not a memory-to-memory device", d.path, d.card)
	}
	// 1. The coded format on CAPTURE first: it governs what OUTPUT offers.
	coded, err := d.enumFormats(d.capType())
	if err != nil {
		return err
	}
	if !slices.Contains(coded, e.codec) {
		return fmt.Errorf("%s (%s) produces %v, not %v", d.path, d.card, coded, e.codec)
	}
	s.capFmt, err = d.setFormat(format{Type: d.capType(), PixelFormat: e.codec, Width: uint32(w), Height: uint32(h), NumPlanes: 1})
	if err != nil {
		return err
	}
	if s.capFmt.PixelFormat != e.codec {
		return fmt.Errorf("%s: CAPTURE format is %v after asking for %v", d.path, s.capFmt.PixelFormat, e.codec)
	}
	// 2, 3. The raw format on OUTPUT: the camera's when the encoder takes it, else I420.
	raws, err := d.enumFormats(d.outType())
	if err != nil {
		return err
	}
	raw := RawFourCC(e.opts.InputFormat)
	switch {
	case raw != 0 && slices.Contains(raws, raw):
	case slices.Contains(raws, FourCCYUV420):
		s.convert = raw != FourCCYUV420
		raw = FourCCYUV420
		e.warnOnce("convert", "encoder does not take the camera's format: frames are converted to I420 (one CPU pass each)",
			"camera", e.opts.InputFormat, "encoder_takes", raws)
	default:
		return fmt.Errorf("%s (%s) takes %v, none of which this backend feeds (%v, or I420 after conversion)", d.path, d.card, raws, e.opts.InputFormat)
	}
	s.outFmt, err = d.setFormat(format{Type: d.outType(), PixelFormat: raw, Width: uint32(w), Height: uint32(h), Field: fieldNone, NumPlanes: 1})
	if err != nil {
		return err
	}
	if s.outFmt.PixelFormat != raw {
		return fmt.Errorf("%s: OUTPUT format is %v after asking for %v", d.path, s.outFmt.PixelFormat, raw)
	}
	if _, err := rawPlanes(s.outFmt, w, h); err != nil {
		return fmt.Errorf("%s: %dx%d: %w", d.path, w, h, err)
	}
	// 4. The frame interval. Drivers without VIDIOC_S_PARM (vicodec) take the default.
	if got, err := d.setFrameInterval(d.outType(), e.cfg.FPS); err != nil {
		e.warnOnce("s_parm", "encoder does not take a frame interval; its default rate control timing applies", "err", err)
	} else if got > 0 && int(got+0.5) != e.cfg.FPS {
		e.warnOnce("s_parm_adjusted", "encoder adjusted the frame rate", "asked", e.cfg.FPS, "got", got)
	}
	// 6. The crop rectangle when the buffer is aligned beyond the picture (1088 rows for
	// 1080): without it the padding would be encoded as picture.
	if int(s.outFmt.Width) != w || int(s.outFmt.Height) != h {
		cw, ch, err := d.setCrop(d.outType(), w, h)
		switch {
		case err != nil:
			e.warnOnce("crop", "encoder does not crop: the stream includes the buffer's alignment padding",
				"picture", fmt.Sprintf("%dx%d", w, h), "buffer", fmt.Sprintf("%dx%d", s.outFmt.Width, s.outFmt.Height), "err", err)
		case cw != w || ch != h:
			e.warnOnce("crop_adjusted", "encoder adjusted the crop rectangle",
				"asked", fmt.Sprintf("%dx%d", w, h), "got", fmt.Sprintf("%dx%d", cw, ch))
		default:
			e.log.Debug("crop set", "picture", fmt.Sprintf("%dx%d", w, h), "buffer", fmt.Sprintf("%dx%d", s.outFmt.Width, s.outFmt.Height))
		}
	}
	// The CAPTURE buffer size may follow the OUTPUT format.
	if s.capFmt, err = d.getFormat(d.capType()); err != nil {
		return err
	}
	if s.capFmt.SizeImage[0] == 0 {
		return fmt.Errorf("%s: CAPTURE sizeimage is 0", d.path)
	}
	// Controls before any buffer or STREAMON (REPEAT_SEQ_HEADER only works then on a Pi).
	return e.applyControls(s)
}

// applyControls queries every control the backend uses, then sets the start settings. A
// control the driver lacks, or refuses, is logged once and skipped.
func (e *Encoder) applyControls(s *session) error {
	d := s.dev
	s.ctrls = map[control]ctrlInfo{}
	for c := range numControls {
		info, ok, err := d.queryControl(controlID(c))
		if err != nil {
			return err
		}
		if ok {
			s.ctrls[c] = info
		}
	}
	for _, st := range startSettings(e.codec, e.cfg, e.opts) {
		e.setControl(s, st.ctrl, st.values)
	}
	return nil
}

// setControl sets c to the first of values the driver offers (menus) or to values[0]
// clamped to its range (integers), and records what happened. It reports whether it was set.
func (e *Encoder) setControl(s *session, c control, values []int64) bool {
	info, ok := s.ctrls[c]
	if !ok {
		e.controls[c] = ControlStatus{Name: c.String(), Note: "not supported by the driver"}
		e.warnOnce("ctrl-missing-"+c.String(), "encoder lacks a control; skipped", "control", c.String(), "wanted", values[0])
		return false
	}
	v, note := values[0], ""
	switch info.typ {
	case ctrlTypeMenu, ctrlTypeIntMenu:
		found := false
		for _, cand := range values {
			if cand >= info.min && cand <= info.max && s.dev.menuHas(controlID(c), cand) {
				v, found = cand, true
				break
			}
		}
		if !found {
			e.controls[c] = ControlStatus{Name: c.String(), Supported: true, Note: fmt.Sprintf("menu lacks %v", values)}
			e.warnOnce("ctrl-menu-"+c.String(), "encoder offers none of the wanted values; left at its default",
				"control", c.String(), "wanted", values)
			return false
		}
		if v != values[0] {
			note = fmt.Sprintf("fell back from %d", values[0])
			e.warnOnce("ctrl-fallback-"+c.String(), "encoder lacks the preferred value; using a fallback",
				"control", c.String(), "wanted", values[0], "using", v)
		}
	case ctrlTypeButton:
	default:
		lo, hi := info.min, info.max
		if c == ctrlGOPSize || c == ctrlH264IPeriod {
			v = clampGOP(v, lo, hi)
		} else {
			v = max(lo, min(v, hi))
		}
		if v != values[0] {
			note = fmt.Sprintf("clamped from %d to the driver's range %d..%d", values[0], lo, hi)
			e.warnOnce("ctrl-clamp-"+c.String(), "control value outside the driver's range; clamped",
				"control", c.String(), "wanted", values[0], "using", v, "min", lo, "max", hi)
		}
	}
	if err := s.dev.setControl(controlID(c), info.typ, v); err != nil {
		e.controls[c] = ControlStatus{Name: c.String(), Supported: true, Note: err.Error()}
		e.warnOnce("ctrl-set-"+c.String(), "encoder refused a control; skipped", "control", c.String(), "value", v, "err", err)
		return false
	}
	e.controls[c] = ControlStatus{Name: c.String(), Supported: true, Value: v, Note: note}
	return true
}

// start allocates and maps buffers, queues every CAPTURE buffer and starts both queues.
func (e *Encoder) start(s *session, memory uint32) error {
	d := s.dev
	var err error
	if s.cap, err = e.allocate(s, d.capType(), memoryMMAP, e.opts.CaptureBuffers); err != nil {
		return err
	}
	nOut := e.opts.OutputBuffers
	if memory == memoryDMABUF {
		nOut = max(nOut, 8)
	}
	if s.out, err = e.allocate(s, d.outType(), memory, nOut); err != nil {
		return err
	}
	s.memory = memory
	for i := range s.cap {
		if err := e.queueCapture(s, i); err != nil {
			return err
		}
	}
	if err := d.stream(d.outType(), true); err != nil {
		return err
	}
	if err := d.stream(d.capType(), true); err != nil {
		return err
	}
	s.started = true
	e.log.Info("encoder streaming", "coded", e.codec, "raw", s.outFmt.PixelFormat,
		"buffer", fmt.Sprintf("%dx%d", s.outFmt.Width, s.outFmt.Height),
		"picture", fmt.Sprintf("%dx%d", e.cfg.Width, e.cfg.Height),
		"output_memory", memoryName(memory), "multiplanar", d.mplane, "convert", s.convert,
		"output_buffers", len(s.out), "capture_buffers", len(s.cap))
	return nil
}

func memoryName(m uint32) string {
	if m == memoryDMABUF {
		return "dmabuf"
	}
	return "mmap"
}

func (e *Encoder) allocate(s *session, t, memory uint32, count int) ([]slot, error) {
	return allocateSlots(s.dev, t, memory, count)
}

// allocateSlots requests count buffers of a queue and, for MMAP, maps them. The encoder and
// the scaler share it.
func allocateSlots(d *device, t, memory uint32, count int) ([]slot, error) {
	n, err := d.reqbufs(t, memory, count)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: VIDIOC_REQBUFS %s allocated no buffer", d.path, queueName(t))
	}
	slots := make([]slot, n)
	if memory != memoryMMAP {
		return slots, nil
	}
	for i := range slots {
		b := buffer{typ: t, memory: memory, index: uint32(i)}
		if err := d.querybuf(&b); err != nil {
			return slots, err
		}
		for p := range int(b.numPlanes) {
			m, err := d.mmap(b.offset[p], b.length[p])
			if err != nil {
				return slots, err
			}
			slots[i].planes = append(slots[i].planes, m)
		}
	}
	return slots, nil
}

func (e *Encoder) queueCapture(s *session, i int) error {
	b := buffer{typ: s.dev.capType(), memory: memoryMMAP, index: uint32(i), numPlanes: uint32(len(s.cap[i].planes))}
	for p, m := range s.cap[i].planes {
		b.length[p] = uint32(len(m))
	}
	if err := s.dev.qbuf(&b); err != nil {
		return err
	}
	s.cap[i].queued = true
	return nil
}

// abandon releases a session without talking to the driver beyond close: after a failure
// the driver may not answer, and close releases the queues anyway.
func (s *session) abandon() {
	_ = unmapAll(s.out, s.cap)
	s.out, s.cap = nil, nil
	s.dev.close()
}

// unmapAll releases the MMAP mappings of every slot of the given queues.
func unmapAll(queues ...[]slot) error {
	var errs []error
	for _, q := range queues {
		for _, sl := range q {
			for _, m := range sl.planes {
				errs = append(errs, unix.Munmap(m))
			}
		}
	}
	return errors.Join(errs...)
}

// shutdown stops a healthy session the orderly way: STREAMOFF, unmap, free, close.
func (s *session) shutdown() error {
	d := s.dev
	var errs []error
	if s.started {
		errs = append(errs, d.stream(d.outType(), false), d.stream(d.capType(), false))
	}
	errs = append(errs, unmapAll(s.out, s.cap))
	if s.started {
		_, err1 := d.reqbufs(d.outType(), s.memory, 0)
		_, err2 := d.reqbufs(d.capType(), memoryMMAP, 0)
		errs = append(errs, err1, err2)
	}
	s.out, s.cap = nil, nil
	errs = append(errs, d.close())
	return errors.Join(errs...)
}

// fail records a device failure, drops the session and schedules the reopen. It returns the
// error to report; frameDropped says a frame was being encoded and is lost.
func (e *Encoder) fail(err error, frameDropped bool) error {
	if frameDropped {
		e.stats.Dropped++
	}
	e.stats.Failures++
	e.failures++
	e.lastErr = err
	if e.s != nil {
		e.s.abandon()
		e.s = nil
	}
	delay := reopenDelay(e.failures)
	e.retryAt = time.Now().Add(delay)
	e.keyframe = false // a reopened encoder starts with an IDR anyway
	e.log.Warn("encoder failed; closing it and reopening", "err", err, "failures_in_a_row", e.failures, "retry_in", delay)
	return fmt.Errorf("v4l2m2m encode: %w (frame dropped; the device will be reopened)", err)
}

// reopen opens a new session after a failure or for a new input layout.
func (e *Encoder) reopen(afterFailure bool) error {
	s, err := e.open()
	if err != nil {
		return err
	}
	e.s = s
	if afterFailure {
		e.stats.Reopens++
		e.log.Info("encoder reopened after a failure", "failures_in_a_row", e.failures)
	}
	return nil
}

// reconfigure closes a healthy session and opens one for a different input.
func (e *Encoder) reconfigure(reason string) error {
	e.log.Info("reopening the encoder", "reason", reason)
	if e.s != nil {
		if err := e.s.shutdown(); err != nil {
			e.log.Debug("closing the previous instance", "err", err)
		}
		e.s = nil
	}
	return e.reopen(false)
}

// memoryFor decides how f reaches the OUTPUT queue.
func (e *Encoder) memoryFor(f *media.Frame) (uint32, error) {
	s := e.s
	fits, why := dmabufFits(f, s.outFmt)
	switch e.opts.Memory {
	case MemoryMMAP:
		return memoryMMAP, nil
	case MemoryDMABUF:
		if !fits {
			return 0, fmt.Errorf("v4l2m2m encode frame %d: DMABUF import required but impossible: %s", f.Seq, why)
		}
		return memoryDMABUF, nil
	}
	if s.started {
		if s.memory == memoryDMABUF && !fits {
			e.warnOnce("dmabuf-lost", "frames no longer fit a DMABUF import; switching to copies", "why", why)
			return memoryMMAP, nil
		}
		return s.memory, nil
	}
	if fits {
		return memoryDMABUF, nil
	}
	if f.DMABuf != nil {
		e.warnOnce("dmabuf-unfit", "the camera exports DMABUFs but their layout does not fit the encoder; copying frames", "why", why)
	}
	return memoryMMAP, nil
}

// Encode implements encoder.Encoder. It queues the frame and waits, at most Options.Timeout,
// for its access unit. With DMABUF it also waits for the OUTPUT buffer to come back, since
// the frame's memory belongs to the camera again once Encode returns.
func (e *Encoder) Encode(f *media.Frame) (media.AccessUnit, error) {
	id, err := e.submit(f, true)
	if err != nil {
		return media.AccessUnit{}, err
	}
	if err := e.await(id); err != nil {
		return media.AccessUnit{}, e.fail(err, true)
	}
	return e.pop(), nil
}

// Submit queues a frame without waiting for its access unit; the frame is copied (MMAP), so
// it may be reused at once. Access units come out of later Encode calls or Drain. For
// offline use and tests; the live pipeline calls Encode.
func (e *Encoder) Submit(f *media.Frame) error {
	_, err := e.submit(f, false)
	return err
}

func (e *Encoder) submit(f *media.Frame, allowDMABUF bool) (uint64, error) {
	if e.closed {
		return 0, errors.New("v4l2m2m encode: encoder closed")
	}
	if f.Width != e.cfg.Width || f.Height != e.cfg.Height {
		return 0, fmt.Errorf("v4l2m2m encode: frame is %dx%d, encoder opened for %dx%d", f.Width, f.Height, e.cfg.Width, e.cfg.Height)
	}
	if e.s == nil {
		if wait := time.Until(e.retryAt); wait > 0 {
			e.stats.Dropped++
			return 0, fmt.Errorf("%w: frame %d dropped, next attempt in %v (last error: %v)", ErrReopening, f.Seq, wait.Round(time.Millisecond), e.lastErr)
		}
		if err := e.reopen(true); err != nil {
			return 0, e.fail(err, true)
		}
	}
	if raw := RawFourCC(f.Format); raw != e.s.outFmt.PixelFormat && e.s.outFmt.PixelFormat != FourCCYUV420 {
		e.opts.InputFormat = f.Format
		if err := e.reconfigure(fmt.Sprintf("frames are %v, the encoder was set up for %v", f.Format, e.s.outFmt.PixelFormat)); err != nil {
			return 0, e.fail(err, true)
		}
	}
	memory, err := e.memoryFor(f)
	if err != nil {
		return 0, err
	}
	if !allowDMABUF && memory == memoryDMABUF {
		if e.s.started {
			return 0, errors.New("v4l2m2m submit: the OUTPUT queue imports DMABUFs; Submit copies frames and needs MMAP")
		}
		memory = memoryMMAP
	}
	if e.s.started && e.s.memory != memory {
		if err := e.reconfigure("OUTPUT memory changes to " + memoryName(memory)); err != nil {
			return 0, e.fail(err, true)
		}
	}
	s := e.s
	if !s.started {
		if err := e.start(s, memory); err != nil {
			return 0, e.fail(err, true)
		}
	}
	if s.stopped {
		if err := e.resume(s); err != nil {
			return 0, e.fail(err, true)
		}
	}
	if e.keyframe {
		e.keyframe = false
		if err := e.forceKeyframe(s); err != nil {
			return 0, e.fail(err, true)
		}
	}
	id, devErr, err := e.queueFrame(s, f)
	if devErr != nil {
		return 0, e.fail(devErr, true)
	}
	return id, err
}

// queueFrame puts f on the OUTPUT queue. A problem with the frame is err (nothing to
// recover); a problem with the device is devErr.
func (e *Encoder) queueFrame(s *session, f *media.Frame) (id uint64, devErr, err error) {
	if devErr := e.collect(s); devErr != nil {
		return 0, devErr, nil
	}
	idx := -1
	if s.memory == memoryDMABUF {
		idx = s.dmaIndex(f.DMABuf.FD)
	} else {
		idx = s.freeOutput()
	}
	deadline := time.Now().Add(e.opts.Timeout)
	for idx < 0 {
		if err := e.wait(s, deadline); err != nil {
			return 0, fmt.Errorf("waiting for a free OUTPUT buffer: %w", err), nil
		}
		if err := e.collect(s); err != nil {
			return 0, err, nil
		}
		if s.memory == memoryDMABUF {
			idx = s.dmaIndex(f.DMABuf.FD)
		} else {
			idx = s.freeOutput()
		}
	}
	b := buffer{typ: s.dev.outType(), memory: s.memory, index: uint32(idx), field: fieldNone, numPlanes: 1}
	copies := 0
	if s.memory == memoryDMABUF {
		b.fd[0] = int32(f.DMABuf.FD)
		b.length[0] = uint32(f.DMABuf.Length)
		b.bytesused[0] = s.outFmt.SizeImage[0]
	} else {
		dst := s.out[idx].planes[0]
		if RawFourCC(f.Format) != s.outFmt.PixelFormat {
			if copies, err = convertFrame(dst, s.outFmt, f, &e.scratch); err != nil {
				return 0, nil, fmt.Errorf("v4l2m2m encode frame %d: %w", f.Seq, err)
			}
		} else {
			if err := copyFrame(dst, s.outFmt, f); err != nil {
				return 0, nil, fmt.Errorf("v4l2m2m encode frame %d: %w", f.Seq, err)
			}
			copies = 1
		}
		b.length[0] = uint32(len(dst))
		b.bytesused[0] = min(s.outFmt.SizeImage[0], uint32(len(dst)))
	}
	id = e.nextID
	e.nextID++
	b.sec, b.usec = idToTimeval(id)
	if err := s.dev.qbuf(&b); err != nil {
		return 0, err, nil
	}
	if s.memory == memoryDMABUF {
		s.dmaSlot[f.DMABuf.FD] = idx
		e.stats.DMABufFrames++
	}
	e.stats.Copies += uint64(copies)
	s.out[idx].queued = true
	s.pending[id] = pendingFrame{seq: f.Seq, at: f.CaptureTime, out: idx}
	e.stats.Frames++
	return id, nil, nil
}

func (s *session) freeOutput() int {
	for i := range s.out {
		if !s.out[i].queued {
			return i
		}
	}
	return -1
}

// dmaIndex picks the OUTPUT slot for a DMABUF: the one that imported it last when free, so
// the kernel keeps the import, else a free slot no other descriptor uses, else any free one.
func (s *session) dmaIndex(fd int) int {
	if i, ok := s.dmaSlot[fd]; ok && i < len(s.out) && !s.out[i].queued {
		return i
	}
	used := map[int]bool{}
	for _, i := range s.dmaSlot {
		used[i] = true
	}
	free := -1
	for i := range s.out {
		if s.out[i].queued {
			continue
		}
		if !used[i] {
			return i
		}
		if free < 0 {
			free = i
		}
	}
	if free >= 0 {
		for other, i := range s.dmaSlot {
			if i == free {
				delete(s.dmaSlot, other)
			}
		}
	}
	return free
}

// await waits until the access unit of frame id is in (or the driver reported it lost) and,
// with DMABUF, until its OUTPUT buffer is back.
func (e *Encoder) await(id uint64) error {
	s := e.s
	pf, ok := s.pending[id]
	if !ok {
		return nil
	}
	deadline := time.Now().Add(e.opts.Timeout)
	for {
		if err := e.collect(s); err != nil {
			return err
		}
		_, waiting := s.pending[id]
		if !waiting && (s.memory != memoryDMABUF || !s.out[pf.out].queued) {
			return nil
		}
		if s.stopped {
			// A LAST buffer outside a drain: nothing more comes until START.
			if err := e.resume(s); err != nil {
				return err
			}
		}
		if err := e.wait(s, deadline); err != nil {
			return fmt.Errorf("frame %d: %w", pf.seq, err)
		}
	}
}

// wait polls the device until something is ready or the deadline passes (ErrWedged).
func (e *Encoder) wait(s *session, deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		return fmt.Errorf("%s: %w (%v)", s.dev.path, ErrWedged, e.opts.Timeout)
	}
	rev, err := s.dev.poll(left)
	if err != nil {
		return err
	}
	if rev == 0 {
		return fmt.Errorf("%s: %w (%v)", s.dev.path, ErrWedged, e.opts.Timeout)
	}
	if rev&pollErr != 0 {
		return fmt.Errorf("%s: poll revents 0x%x: %w", s.dev.path, rev, ErrDeviceError)
	}
	if rev&pollPri != 0 {
		for {
			_, _, ok, err := s.dev.dqevent()
			if err != nil || !ok {
				return err
			}
		}
	}
	return nil
}

// collect dequeues every done buffer of both queues without waiting.
func (e *Encoder) collect(s *session) error {
	for {
		b := buffer{typ: s.dev.outType(), memory: s.memory, numPlanes: 1}
		ok, err := s.dev.dqbuf(&b)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if int(b.index) < len(s.out) {
			s.out[b.index].queued = false
		}
	}
	for !s.stopped {
		b := buffer{typ: s.dev.capType(), memory: memoryMMAP, numPlanes: maxPlanes}
		ok, err := s.dev.dqbuf(&b)
		if errors.Is(err, syscall.EPIPE) {
			if s.draining { // past the LAST buffer: the drain is over
				s.stopped = true
				break
			}
			// vb2 says the LAST buffer was dequeued, yet the encoder was started again: the
			// driver did not clear that state on V4L2_ENC_CMD_START (vicodec in Linux 6.1
			// checks has_stopped after the m2m helper has cleared it). STREAMOFF/STREAMON of
			// CAPTURE, which dev-encoder.rst also allows from Stopped, clears it, at the cost
			// of a reset (the next frame is a keyframe).
			e.warnOnce("start-epipe", "encoder still reports its last buffer after V4L2_ENC_CMD_START; restarting CAPTURE instead")
			if err := e.restartCapture(s); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := e.onCapture(s, &b); err != nil {
			return err
		}
	}
	return nil
}

// onCapture turns a dequeued CAPTURE buffer into an access unit and requeues it.
func (e *Encoder) onCapture(s *session, b *buffer) error {
	if int(b.index) >= len(s.cap) {
		return fmt.Errorf("%s: CAPTURE buffer index %d out of range", s.dev.path, b.index)
	}
	sl := &s.cap[b.index]
	sl.queued = false
	id := timevalToID(b.sec, b.usec)
	last := b.flags&bufFlagLast != 0
	if last {
		s.stopped = true
	}
	switch {
	case b.flags&bufFlagError != 0:
		e.stats.BufferErrors++
		e.warnOnce("buf-error", "encoder flagged a CAPTURE buffer as failed; its frame is dropped", "sequence", b.seq)
		delete(s.pending, id)
	case b.bytesused[0] > b.dataOffset[0]:
		end := min(int(b.bytesused[0]), len(sl.planes[0]))
		e.emit(s, id, b.flags, sl.planes[0][b.dataOffset[0]:end])
	}
	if last {
		return nil // requeued by resume, once START has been sent
	}
	return e.queueCapture(s, int(b.index))
}

// emit appends the access unit of frame id to the ready queue.
func (e *Encoder) emit(s *session, id uint64, flags uint32, data []byte) {
	if e.codec == FourCCH264 && !hasVCL(data) {
		// Parameter sets in a buffer of their own (some drivers send them once, first):
		// they belong in front of the next picture.
		s.prefix = append(s.prefix, data...)
		return
	}
	pf, ok := s.pending[id]
	if !ok {
		// The driver did not carry the timestamp over: the oldest frame is the best guess.
		e.warnOnce("ts-unmatched", "CAPTURE timestamp matches no queued frame; attributing to the oldest")
		for pid, p := range s.pending {
			if !ok || pid < id {
				id, pf, ok = pid, p, true
			}
		}
	}
	for pid := range s.pending {
		if pid < id { // the encoder skipped these frames
			delete(s.pending, pid)
		}
	}
	delete(s.pending, id)

	buf := e.takeBuf()
	buf = append(buf, s.prefix...)
	buf = append(buf, data...)
	hadPrefix := len(s.prefix) > 0
	s.prefix = s.prefix[:0]
	// The bitstream decides for H.264 (only an IDR lets a browser start, whatever the driver
	// flags); for other formats the driver's V4L2_BUF_FLAG_KEYFRAME counts too.
	key := codedKeyframe(e.codec, buf)
	flagged := flags&bufFlagKeyframe != 0
	switch {
	case e.codec != FourCCH264:
		key = key || flagged
	case flagged != key && !(flagged && hadPrefix && !key):
		e.warnOnce("keyflag-mismatch", "driver's V4L2_BUF_FLAG_KEYFRAME disagrees with the bitstream; trusting the bitstream",
			"flagged", flagged, "idr", key)
	}
	if e.codec == FourCCH264 && (key || hadPrefix) {
		for _, nal := range h264.SplitAnnexB(buf) {
			switch h264.Type(nal) {
			case h264.NALSPS:
				e.sps = append(e.sps[:0], nal...)
			case h264.NALPPS:
				e.pps = append(e.pps[:0], nal...)
			}
		}
		if key {
			buf = h264.EnsureParameterSets(buf, e.sps, e.pps)
		}
	}
	e.ready = append(e.ready, media.AccessUnit{Data: buf, Keyframe: key, FrameSeq: pf.seq, CaptureTime: pf.at})
	e.failures = 0
}

func (e *Encoder) takeBuf() []byte {
	if n := len(e.spare); n > 0 {
		b := e.spare[n-1][:0]
		e.spare = e.spare[:n-1]
		return b
	}
	return make([]byte, 0, 64<<10)
}

// pop returns the oldest ready access unit (or an empty one: the frame was skipped). Its
// Data stays valid until the next call.
func (e *Encoder) pop() media.AccessUnit {
	if e.out != nil {
		e.spare = append(e.spare, e.out)
		e.out = nil
	}
	if len(e.ready) == 0 {
		return media.AccessUnit{}
	}
	au := e.ready[0]
	e.ready = slices.Delete(e.ready, 0, 1)
	e.out = au.Data
	e.stats.Encoded++
	return au
}

// Drain runs dev-encoder.rst's Drain sequence: V4L2_ENC_CMD_STOP, then buffers are
// dequeued until the one flagged V4L2_BUF_FLAG_LAST, then V4L2_ENC_CMD_START resumes the
// encoder with its state (no new IDR). It returns every access unit not returned yet, in
// order; their Data belongs to the caller.
func (e *Encoder) Drain() ([]media.AccessUnit, error) {
	if e.closed {
		return nil, errors.New("v4l2m2m drain: encoder closed")
	}
	if s := e.s; s != nil && s.started {
		if err := e.drain(s); err != nil {
			return e.takeReady(), e.fail(err, false)
		}
		if err := e.resume(s); err != nil {
			return e.takeReady(), e.fail(err, false)
		}
	}
	return e.takeReady(), nil
}

func (e *Encoder) drain(s *session) error {
	if err := s.dev.encoderCmd(encCmdStop); err != nil {
		return err
	}
	s.draining = true
	defer func() { s.draining = false }()
	deadline := time.Now().Add(e.opts.Timeout)
	for {
		if err := e.collect(s); err != nil {
			return err
		}
		outstanding := false
		for i := range s.out {
			outstanding = outstanding || s.out[i].queued
		}
		if s.stopped && !outstanding {
			clear(s.pending) // whatever was not encoded will not be
			return nil
		}
		if err := e.wait(s, deadline); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
}

// resume sends V4L2_ENC_CMD_START after a LAST buffer and requeues CAPTURE buffers. A
// driver that stays in its stopped state is caught here, by the next DQBUF (see collect).
func (e *Encoder) resume(s *session) error {
	if err := s.dev.encoderCmd(encCmdStart); err != nil {
		return err
	}
	s.stopped = false
	for i := range s.cap {
		if !s.cap[i].queued {
			if err := e.queueCapture(s, i); err != nil {
				return err
			}
		}
	}
	return e.collect(s)
}

func (e *Encoder) takeReady() []media.AccessUnit {
	out := e.ready
	e.ready = nil
	e.stats.Encoded += uint64(len(out))
	return out
}

// Reset runs dev-encoder.rst's Reset sequence: a Drain when frames are in flight (their
// access units stay queued for the following Encode calls), then STREAMOFF and STREAMON of
// CAPTURE. The encoder then starts a stream of its own: an IDR with parameter sets.
func (e *Encoder) Reset() error {
	if e.closed {
		return errors.New("v4l2m2m reset: encoder closed")
	}
	if e.s == nil || !e.s.started {
		return nil
	}
	if err := e.reset(e.s); err != nil {
		return e.fail(err, false)
	}
	return nil
}

func (e *Encoder) reset(s *session) error {
	if len(s.pending) > 0 {
		if err := e.drain(s); err != nil {
			return err
		}
	}
	return e.restartCapture(s)
}

// restartCapture stops and restarts the CAPTURE queue and gives it all its buffers again.
func (e *Encoder) restartCapture(s *session) error {
	d := s.dev
	if err := d.stream(d.capType(), false); err != nil {
		return err
	}
	for i := range s.cap {
		s.cap[i].queued = false
	}
	s.stopped = false
	s.prefix = s.prefix[:0]
	if err := d.stream(d.capType(), true); err != nil {
		return err
	}
	for i := range s.cap {
		if err := e.queueCapture(s, i); err != nil {
			return err
		}
	}
	e.stats.Resets++
	return nil
}

// forceKeyframe makes the next frame an IDR: with V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME when
// the driver has it, else with the Reset sequence.
func (e *Encoder) forceKeyframe(s *session) error {
	if info, ok := s.ctrls[ctrlForceKeyFrame]; ok {
		err := s.dev.setControl(controlID(ctrlForceKeyFrame), info.typ, 1)
		if err == nil {
			return nil
		}
		e.warnOnce("force-key-failed", "forcing a keyframe through the control failed; using the Reset sequence", "err", err)
	} else {
		e.warnOnce("force-key-missing", "encoder lacks V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME; keyframes are forced with the Reset sequence (STREAMOFF/STREAMON of CAPTURE)")
	}
	return e.reset(s)
}

// RequestKeyframe implements encoder.Encoder: the next encoded frame is an IDR.
func (e *Encoder) RequestKeyframe() { e.keyframe = true }

// SetBitrate implements encoder.Encoder. The new target also applies after a reopen. A
// driver without a bitrate control is logged once and the call succeeds: there is nothing
// else to do about it.
func (e *Encoder) SetBitrate(bps int) error {
	if bps <= 0 {
		return fmt.Errorf("v4l2m2m set bitrate %d: must be positive", bps)
	}
	e.cfg.BitrateBps = bps
	if e.s == nil {
		return nil
	}
	if !e.setControl(e.s, ctrlBitrate, []int64{int64(bps)}) {
		if st := e.controls[ctrlBitrate]; st.Supported && e.s.started {
			// Some drivers only take it with CAPTURE stopped (-EBUSY): Reset and retry.
			if err := e.reset(e.s); err != nil {
				return e.fail(err, false)
			}
			if !e.setControl(e.s, ctrlBitrate, []int64{int64(bps)}) {
				return fmt.Errorf("v4l2m2m set bitrate %d: %s", bps, e.controls[ctrlBitrate].Note)
			}
		}
	}
	return nil
}

// SetQP sets the quantizer of I and P frames while encoding (and after any reopen). A
// driver without the coded format's QP controls gives an error wrapping
// errors.ErrUnsupported.
func (e *Encoder) SetQP(iqp, pqp int) error {
	ic, pc, ok := qpControls(e.codec)
	if !ok {
		return fmt.Errorf("v4l2m2m set QP: no QP controls for %v: %w", e.codec, errors.ErrUnsupported)
	}
	e.opts.IQP, e.opts.PQP = iqp, pqp
	if e.s == nil {
		return nil
	}
	for _, x := range []struct {
		c control
		v int
	}{{ic, iqp}, {pc, pqp}} {
		if x.v <= 0 {
			continue
		}
		if _, ok := e.s.ctrls[x.c]; !ok {
			return fmt.Errorf("v4l2m2m set QP: driver lacks %v: %w", x.c, errors.ErrUnsupported)
		}
		if !e.setControl(e.s, x.c, []int64{int64(x.v)}) {
			return fmt.Errorf("v4l2m2m set QP %v=%d: %s", x.c, x.v, e.controls[x.c].Note)
		}
	}
	return nil
}

// Close implements encoder.Encoder; it is idempotent.
func (e *Encoder) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	if e.s == nil {
		return nil
	}
	err := e.s.shutdown()
	e.s = nil
	if err != nil {
		return fmt.Errorf("v4l2m2m close: %w", err)
	}
	return nil
}
