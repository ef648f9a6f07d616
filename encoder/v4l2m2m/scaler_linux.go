//go:build linux && cgo

package v4l2m2m

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/edgeflux/edge/internal/media"
)

// Scaler drives a V4L2 memory-to-memory scaler (a device whose OUTPUT and CAPTURE queues both
// take raw pictures: the Raspberry Pi's ISP node, i.MX's PXP or ISI, Rockchip's RGA, vim2m on
// the virtual board) through the same device layer as the encoder. One picture is in flight
// at a time: Scale copies the frame into an OUTPUT buffer, waits for the CAPTURE buffer and
// returns a frame over its mapping, valid until the next call. A new input or output size or
// layout sets the device up again.
type Scaler struct {
	opts ScalerOptions
	log  *slog.Logger
	name string

	s      *scaleSession
	stats  ScalerStats
	out    media.Frame
	closed bool

	pending      bool        // Submit queued a frame that Wait has not returned
	pendingIn    int         // its OUTPUT buffer
	pendingFrame media.Frame // its number and capture time
}

var errScalerClosed = errors.New("v4l2m2m scaler: closed")

// scaleSession is the device set up for one input and output.
type scaleSession struct {
	dev           *device
	inputFormat   media.PixelFormat
	inW, inH      int
	outW, outH    int
	outPixel      media.PixelFormat
	inFmt, capFmt format
	capSpecs      []planeSpec
	in, cap       []slot
	capHeld       int // CAPTURE buffer handed out by the last Scale, -1 when none
	started       bool
	nextTimestamp uint64
}

// NewScaler opens the node once to check that it is a memory-to-memory device with raw
// formats on both queues. The device is set up on the first Scale, when sizes are known.
func NewScaler(opts ScalerOptions) (*Scaler, error) {
	if opts.Device == "" {
		return nil, errors.New("v4l2m2m scaler: no device given")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d, err := openDevice(opts.Device)
	if err != nil {
		return nil, fmt.Errorf("v4l2m2m scaler: %w", err)
	}
	defer d.close()
	if !d.isM2M() {
		return nil, fmt.Errorf("v4l2m2m scaler: %s (%s) is not a memory-to-memory device", d.path, d.card)
	}
	ins, err := d.enumFormats(d.outType())
	if err != nil {
		return nil, fmt.Errorf("v4l2m2m scaler: %w", err)
	}
	outs, err := d.enumFormats(d.capType())
	if err != nil {
		return nil, fmt.Errorf("v4l2m2m scaler: %w", err)
	}
	if !slices.ContainsFunc(ins, func(f FourCC) bool { return rawPixelFormat(f) != media.PixelFormatUnknown }) ||
		!slices.ContainsFunc(outs, func(f FourCC) bool { return rawPixelFormat(f) != media.PixelFormatUnknown }) {
		return nil, fmt.Errorf("v4l2m2m scaler: %s (%s) takes %v and makes %v: not raw pictures both ways", d.path, d.card, ins, outs)
	}
	return &Scaler{opts: opts, log: opts.Log.With("device", opts.Device),
		name: fmt.Sprintf("v4l2m2m %s (%s)", opts.Device, d.card)}, nil
}

// Name says which device scales.
func (sc *Scaler) Name() string { return sc.name }

// Stats returns the counters so far.
func (sc *Scaler) Stats() ScalerStats { return sc.stats }

// Scale returns f scaled to w x h. The picture lives in the device's CAPTURE buffer and is
// valid until the next call. A device error closes the session and is returned; the next
// call sets the device up again. It is Submit then Wait.
func (sc *Scaler) Scale(f *media.Frame, w, h int) (*media.Frame, error) {
	if err := sc.Submit(f, w, h); err != nil {
		return nil, err
	}
	return sc.Wait()
}

// Submit copies f into an OUTPUT buffer and queues it to be scaled to w x h; f may be reused
// as soon as Submit returns. Wait returns the picture. The picture of the previous Wait is
// the caller's no longer.
func (sc *Scaler) Submit(f *media.Frame, w, h int) error {
	if sc.closed {
		return errScalerClosed
	}
	if sc.pending {
		return errors.New("v4l2m2m scaler: Submit twice without Wait")
	}
	s := sc.s
	if s == nil || s.inputFormat != f.Format || s.inW != f.Width || s.inH != f.Height || s.outW != w || s.outH != h {
		if s != nil {
			if err := s.shutdown(); err != nil {
				sc.log.Debug("closing the previous scaler session", "err", err)
			}
			sc.s = nil
		}
		var err error
		if s, err = sc.open(f.Format, f.Width, f.Height, w, h); err != nil {
			return err
		}
		sc.s = s
	}
	in, err := sc.submit(s, f)
	if err != nil {
		s.abandon()
		sc.s = nil
		return fmt.Errorf("v4l2m2m scale frame %d: %w", f.Seq, err)
	}
	sc.pending, sc.pendingIn = true, in
	sc.pendingFrame = media.Frame{Seq: f.Seq, CaptureTime: f.CaptureTime}
	return nil
}

// Wait returns the picture of the frame given to Submit, at most Options.Timeout later. It is
// valid until the next Submit.
func (sc *Scaler) Wait() (*media.Frame, error) {
	if !sc.pending {
		return nil, errors.New("v4l2m2m scaler: Wait without Submit")
	}
	sc.pending = false
	s := sc.s
	if s == nil {
		return nil, errScalerClosed
	}
	out, err := sc.wait(s, sc.pendingIn)
	if err != nil {
		s.abandon()
		sc.s = nil
		return nil, fmt.Errorf("v4l2m2m scale frame %d: %w", sc.pendingFrame.Seq, err)
	}
	sc.stats.Frames++
	return out, nil
}

// open sets the device up for in (format and size) to w x h: formats on both queues, checked
// against what the driver made of them, then buffers, mappings and STREAMON.
func (sc *Scaler) open(in media.PixelFormat, inW, inH, w, h int) (*scaleSession, error) {
	inCC := RawFourCC(in)
	if inCC == 0 {
		return nil, fmt.Errorf("v4l2m2m scaler: frames are %v, which no scaler takes", in)
	}
	d, err := openDevice(sc.opts.Device)
	if err != nil {
		return nil, fmt.Errorf("v4l2m2m scaler: %w", err)
	}
	s := &scaleSession{dev: d, inputFormat: in, inW: inW, inH: inH, outW: w, outH: h, capHeld: -1}
	if err := sc.configure(s, inCC); err != nil {
		s.abandon()
		if errors.Is(err, ErrScalerSize) {
			return nil, err // says "v4l2m2m scaler" already
		}
		return nil, fmt.Errorf("v4l2m2m scaler: %w", err)
	}
	sc.stats.Sessions++
	sc.log.Info("scaler streaming", "in", fmt.Sprintf("%v %dx%d", in, inW, inH),
		"out", fmt.Sprintf("%v %dx%d", s.outPixel, w, h), "multiplanar", d.mplane)
	return s, nil
}

func (sc *Scaler) configure(s *scaleSession, inCC FourCC) error {
	d := s.dev
	ins, err := d.enumFormats(d.outType())
	if err != nil {
		return err
	}
	if !slices.Contains(ins, inCC) {
		return fmt.Errorf("%s (%s) takes %v, not the frames' %v", d.path, d.card, ins, inCC)
	}
	outs, err := d.enumFormats(d.capType())
	if err != nil {
		return err
	}
	var outCC FourCC
	want := []media.PixelFormat{sc.opts.OutputFormat}
	if sc.opts.OutputFormat == media.PixelFormatUnknown {
		want = []media.PixelFormat{s.inputFormat, media.PixelFormatI420, media.PixelFormatNV12, media.PixelFormatYUYV}
	}
	for _, p := range want {
		if cc := RawFourCC(p); cc != 0 && slices.Contains(outs, cc) {
			outCC, s.outPixel = cc, p
			break
		}
	}
	if outCC == 0 {
		return fmt.Errorf("%s (%s) makes %v, none of %v", d.path, d.card, outs, want)
	}
	s.inFmt, err = d.setFormat(format{Type: d.outType(), PixelFormat: inCC, Width: uint32(s.inW), Height: uint32(s.inH), Field: fieldNone, NumPlanes: 1})
	if err != nil {
		return err
	}
	s.capFmt, err = d.setFormat(format{Type: d.capType(), PixelFormat: outCC, Width: uint32(s.outW), Height: uint32(s.outH), Field: fieldNone, NumPlanes: 1})
	if err != nil {
		return err
	}
	// A driver adjusts a size it cannot do instead of failing: then this is not a scaler
	// for these sizes (vim2m stops at 640x480).
	if s.inFmt.PixelFormat != inCC || int(s.inFmt.Width) != s.inW || int(s.inFmt.Height) < s.inH ||
		s.capFmt.PixelFormat != outCC || int(s.capFmt.Width) != s.outW || int(s.capFmt.Height) < s.outH {
		return fmt.Errorf("%w: asked %v %dx%d to %v %dx%d, %s set %v %dx%d to %v %dx%d", ErrScalerSize,
			inCC, s.inW, s.inH, outCC, s.outW, s.outH, d.card,
			s.inFmt.PixelFormat, s.inFmt.Width, s.inFmt.Height, s.capFmt.PixelFormat, s.capFmt.Width, s.capFmt.Height)
	}
	if _, err := rawPlanes(s.inFmt, s.inW, s.inH); err != nil {
		return err
	}
	if s.capSpecs, err = rawPlanes(s.capFmt, s.outW, s.outH); err != nil {
		return err
	}
	if s.in, err = allocateSlots(d, d.outType(), memoryMMAP, 2); err != nil {
		return err
	}
	if s.cap, err = allocateSlots(d, d.capType(), memoryMMAP, 2); err != nil {
		return err
	}
	if err := d.stream(d.outType(), true); err != nil {
		return err
	}
	if err := d.stream(d.capType(), true); err != nil {
		return err
	}
	s.started = true
	return nil
}

// submit gives the driver its CAPTURE buffers back and queues f in a free OUTPUT buffer,
// whose index it returns.
func (sc *Scaler) submit(s *scaleSession, f *media.Frame) (int, error) {
	d := s.dev
	// The picture handed out last time is the caller's no longer: its buffer goes back.
	if s.capHeld >= 0 {
		if err := s.queue(d.capType(), s.capHeld, 0); err != nil {
			return 0, err
		}
		s.capHeld = -1
	}
	for i := range s.cap {
		if !s.cap[i].queued {
			if err := s.queue(d.capType(), i, 0); err != nil {
				return 0, err
			}
		}
	}
	in := slices.IndexFunc(s.in, func(x slot) bool { return !x.queued })
	if in < 0 {
		return 0, fmt.Errorf("%s: no free OUTPUT buffer", d.path)
	}
	dst := s.in[in].planes[0]
	if err := copyFrame(dst, s.inFmt, f); err != nil {
		return 0, err
	}
	sc.stats.Copies++
	s.nextTimestamp++
	if err := s.queue(d.outType(), in, min(s.inFmt.SizeImage[0], uint32(len(dst)))); err != nil {
		return 0, err
	}
	return in, nil
}

// wait dequeues until the picture of OUTPUT buffer in is done and the buffer is back.
func (sc *Scaler) wait(s *scaleSession, in int) (*media.Frame, error) {
	d := s.dev
	deadline := time.Now().Add(sc.opts.Timeout)
	got := -1
	for got < 0 || s.in[in].queued {
		for _, t := range []uint32{d.outType(), d.capType()} {
			b := buffer{typ: t, memory: memoryMMAP, numPlanes: maxPlanes}
			ok, err := d.dqbuf(&b)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			if t == d.outType() {
				s.in[b.index].queued = false
				continue
			}
			s.cap[b.index].queued = false
			if b.flags&bufFlagError != 0 {
				return nil, fmt.Errorf("%s: CAPTURE buffer flagged as failed", d.path)
			}
			got = int(b.index)
		}
		if got >= 0 && !s.in[in].queued {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%s: %w (%v)", d.path, ErrWedged, sc.opts.Timeout)
		}
		rev, err := d.poll(left)
		if err != nil {
			return nil, err
		}
		if rev&pollErr != 0 {
			return nil, fmt.Errorf("%s: poll revents 0x%x: %w", d.path, rev, ErrDeviceError)
		}
	}
	s.capHeld = got
	m := s.cap[got].planes[0]
	sc.out = media.Frame{Format: s.outPixel, Width: s.outW, Height: s.outH, Seq: sc.pendingFrame.Seq, CaptureTime: sc.pendingFrame.CaptureTime}
	for i, p := range s.capSpecs {
		end := p.offset + p.stride*(p.rows-1) + p.rowBytes
		if end > len(m) {
			return nil, fmt.Errorf("%s: CAPTURE buffer of %d bytes cannot hold plane %d (to byte %d)", d.path, len(m), i, end)
		}
		sc.out.Planes[i], sc.out.Strides[i] = m[p.offset:end], p.stride
	}
	return &sc.out, nil
}

func (s *scaleSession) queue(t uint32, i int, bytesused uint32) error {
	q := s.cap
	if t == s.dev.outType() {
		q = s.in
	}
	b := buffer{typ: t, memory: memoryMMAP, index: uint32(i), field: fieldNone, numPlanes: 1}
	b.length[0] = uint32(len(q[i].planes[0]))
	b.bytesused[0] = bytesused
	b.sec, b.usec = idToTimeval(s.nextTimestamp)
	if err := s.dev.qbuf(&b); err != nil {
		return err
	}
	q[i].queued = true
	return nil
}

// abandon closes a session after a failure without further talk to the driver.
func (s *scaleSession) abandon() {
	_ = unmapAll(s.in, s.cap)
	s.in, s.cap = nil, nil
	s.dev.close()
}

// shutdown closes a healthy session: STREAMOFF, unmap, free, close.
func (s *scaleSession) shutdown() error {
	d := s.dev
	var errs []error
	if s.started {
		errs = append(errs, d.stream(d.outType(), false), d.stream(d.capType(), false))
	}
	errs = append(errs, unmapAll(s.in, s.cap))
	if s.started {
		_, err1 := d.reqbufs(d.outType(), memoryMMAP, 0)
		_, err2 := d.reqbufs(d.capType(), memoryMMAP, 0)
		errs = append(errs, err1, err2)
	}
	s.in, s.cap = nil, nil
	errs = append(errs, d.close())
	return errors.Join(errs...)
}

// Close releases the device; it is idempotent.
func (sc *Scaler) Close() error {
	if sc.closed {
		return nil
	}
	sc.closed = true
	if sc.s == nil {
		return nil
	}
	err := sc.s.shutdown()
	sc.s = nil
	if err != nil {
		return fmt.Errorf("v4l2m2m scaler close: %w", err)
	}
	return nil
}
