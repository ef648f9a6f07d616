package pipeline

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/scale"
	"github.com/edgeflux/edge/internal/media"
)

// Quality names a layer the way simulcast does: low, medium and high, with the RTP stream
// ids "q", "h" and "f" (quarter, half, full) that browsers and SFUs use for them.
type Quality int

// Qualities, from the smallest picture to the largest.
const (
	QualityLow Quality = iota
	QualityMedium
	QualityHigh
)

func (q Quality) String() string {
	switch q {
	case QualityLow:
		return "low"
	case QualityMedium:
		return "medium"
	case QualityHigh:
		return "high"
	}
	return fmt.Sprintf("Quality(%d)", int(q))
}

// RID is the layer's RTP stream id: "q", "h" or "f".
func (q Quality) RID() string {
	switch q {
	case QualityLow:
		return "q"
	case QualityMedium:
		return "h"
	}
	return "f"
}

// Scaler makes a layer's smaller picture of a frame. encoder/scale is the software one; a V4L2
// memory-to-memory scaler (encoder/v4l2m2m) is the hardware one. Scale's result is valid until
// the next call. A Scaler is used from one goroutine at a time.
type Scaler interface {
	Scale(f *media.Frame, w, h int) (*media.Frame, error)
	Name() string
	Close() error
}

// asyncScaler is a Scaler that takes a frame now and delivers its picture later (a hardware
// scaler: Submit copies the frame into the device, Wait waits for the device). With several
// layers the source's goroutine only submits, and the layer's goroutine waits, so a slow
// device holds up its own layer only.
type asyncScaler interface {
	Submit(f *media.Frame, w, h int) error
	Wait() (*media.Frame, error)
}

// LayerConfig is one encode of the source.
type LayerConfig struct {
	Quality Quality
	// Width and Height are the size the layer encodes at (even, at most the source's); 0
	// means the source's own size.
	Width, Height int
	Encoder       encoder.Encoder // opened at Width x Height; the caller closes it
	// Sink takes the layer's access units; nil drops them until SetSink gives one.
	Sink Sink
	// Scaler, when not nil, makes the layer's pictures (a hardware scaler; one that also has
	// Submit and Wait, as encoder/v4l2m2m's does, is waited for on the layer's goroutine). The
	// pipeline closes it when Run returns. If it fails, the layer logs it once and scales in
	// software from then on. Without one the layer scales in software.
	Scaler Scaler
}

// Layer is one encode of the source at one size: its own encoder, sink, keyframe requests
// and bitrate, and a switch to stop encoding it while nobody watches it (dynacast).
type Layer struct {
	p       *Pipeline
	quality Quality
	w, h    int
	enc     encoder.Encoder
	sink    atomic.Pointer[sinkRef]

	// Scalers are used on the source's goroutine while the layer is not busy; only an
	// asynchronous hardware scaler's Wait runs on the layer's goroutine, while it is busy.
	hw    Scaler // nil when none was given or after it failed
	soft  *scale.Scaler
	black *media.Frame // the privacy picture at the layer's size

	// in hands a prepared picture to the layer's goroutine (several layers only), or nil when
	// the picture is in the hardware scaler, to be waited for there; busy is true from the
	// hand-off until the encode is done. hwFailed is set there when that wait failed.
	in       chan *media.Frame
	hwFailed bool
	busy     atomic.Bool
	active   atomic.Bool
	dropped  atomic.Uint64 // frames skipped because the layer was still busy

	// Keyframe requests are counted rather than flagged so that an IDR encoded while a new
	// request arrives does not swallow it: the request is served only by a later IDR.
	keyframeRequests atomic.Uint64
	keyframeServed   uint64 // owned by the encoding goroutine
	startRequests    atomic.Uint64
	startServed      uint64       // owned by the encoding goroutine
	lastForced       time.Time    // when a keyframe was last forced on request
	bitrate          atomic.Int64 // pending bitrate change, 0 when none

	mu      sync.Mutex
	err     error
	window  []outputMark
	encoded uint64
	scaler  string // what made the last picture: "", "software" or the hardware's name
}

type sinkRef struct{ s Sink }

func newLayer(p *Pipeline, c LayerConfig) *Layer {
	l := &Layer{p: p, quality: c.Quality, w: c.Width, h: c.Height, enc: c.Encoder, hw: c.Scaler, soft: scale.New()}
	if c.Sink != nil {
		l.sink.Store(&sinkRef{c.Sink})
	}
	l.active.Store(true)
	return l
}

// Quality is the layer's quality; RID its RTP stream id.
func (l *Layer) Quality() Quality { return l.quality }

// RID is the layer's RTP stream id ("q", "h" or "f").
func (l *Layer) RID() string { return l.quality.RID() }

// Size is the picture size the layer encodes (0, 0: the source's).
func (l *Layer) Size() (w, h int) { return l.w, l.h }

// Encoder is the layer's encoder.
func (l *Layer) Encoder() encoder.Encoder { return l.enc }

// SetSink sets where the layer's access units go from its next access unit on; nil drops
// them. Safe from any goroutine.
func (l *Layer) SetSink(s Sink) {
	if s == nil {
		l.sink.Store(nil)
		return
	}
	l.sink.Store(&sinkRef{s})
	l.RequestKeyframe() // a new sink starts from a picture it can decode
}

// SetActive starts or stops encoding the layer; an inactive layer costs nothing. Turning it
// back on asks for a keyframe. Safe from any goroutine.
func (l *Layer) SetActive(on bool) {
	if l.active.Swap(on) != on && on {
		l.RequestKeyframe()
	}
}

// Active reports whether the layer is being encoded.
func (l *Layer) Active() bool { return l.active.Load() }

// RequestKeyframe asks for an IDR on this layer soon; requests are coalesced and at most one
// IDR per MinKeyframeGap is forced. Safe from any goroutine.
func (l *Layer) RequestKeyframe() { l.keyframeRequests.Add(1) }

// RequestStartKeyframe asks for an IDR a viewer starts on: it is forced after
// MinStartKeyframeGap rather than MinKeyframeGap, since a joining viewer sees nothing until it
// comes. Safe from any goroutine.
func (l *Layer) RequestStartKeyframe() { l.startRequests.Add(1) }

// SetBitrate changes the layer encoder's target bitrate before its next frame. Safe from any
// goroutine.
func (l *Layer) SetBitrate(bps int) { l.bitrate.Store(int64(bps)) }

// LayerStatus is a snapshot of one layer.
type LayerStatus struct {
	Quality       Quality
	RID           string
	Width, Height int
	Active        bool
	Encoder       string
	Scaler        string // what makes its pictures: "software", a hardware scaler, "" before the first
	FPS           float64
	BitrateBps    float64
	Encoded       uint64
	Dropped       uint64 // frames skipped because the layer was still busy with an earlier one
	Err           error  // the last encode or scale failure, nil once an access unit follows
}

// Status reports the layer's recent output.
func (l *Layer) Status() LayerStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LayerStatus{Quality: l.quality, RID: l.RID(), Width: l.w, Height: l.h, Active: l.active.Load(),
		Scaler: l.scaler, Encoded: l.encoded, Dropped: l.dropped.Load(), Err: l.err}
	if l.enc != nil {
		s.Encoder = l.enc.Name()
	}
	now := time.Now()
	var bytes, frames int
	for _, m := range l.window {
		if now.Sub(m.at) <= statusWindow {
			bytes += m.bytes
			frames++
		}
	}
	s.FPS = float64(frames) / statusWindow.Seconds()
	s.BitrateBps = float64(bytes*8) / statusWindow.Seconds()
	return s
}

// work encodes what handle hands over, until Run closes in.
func (l *Layer) work() {
	for f := range l.in {
		if f == nil { // submitted to the hardware scaler: wait for it here
			var err error
			if f, err = l.hw.(asyncScaler).Wait(); err != nil {
				l.hwFailed = true // the source's goroutine closes it before the next frame
				l.fail(fmt.Errorf("scale: %w", err), nil)
				l.busy.Store(false)
				continue
			}
		}
		l.encode(f)
		l.busy.Store(false)
	}
}

// submit starts the layer's picture of f in an asynchronous hardware scaler; ok is false when
// there is none (or it just failed), and the picture must be made with scale.
func (l *Layer) submit(f *media.Frame) (ok bool) {
	if l.hwFailed {
		l.dropHardware(errors.New("it failed on the previous frame"))
	}
	as, async := l.hw.(asyncScaler)
	if !async || (l.w == f.Width && l.h == f.Height) {
		return false
	}
	if err := as.Submit(f, l.w, l.h); err != nil {
		l.dropHardware(err)
		return false
	}
	l.setScaler(l.hw.Name())
	return true
}

// dropHardware closes a failed hardware scaler: the layer scales in software from now on.
func (l *Layer) dropHardware(err error) {
	l.p.log.Warn("hardware scaler failed; this layer scales in software from now on",
		"layer", l.quality, "scaler", l.hw.Name(), "err", err)
	l.hw.Close()
	l.hw, l.hwFailed = nil, false
}

// scale makes the layer's picture of f in the layer's own memory: the hardware scaler when
// there is one that works, else software (which copies when the size is the same, so the
// layer's goroutine never reads a camera buffer that has been requeued).
func (l *Layer) scale(f *media.Frame) (*media.Frame, error) {
	w, h := l.w, l.h
	if w == 0 {
		w, h = f.Width, f.Height
	}
	if l.hw != nil && (w != f.Width || h != f.Height) {
		out, err := l.hw.Scale(f, w, h)
		if err == nil {
			l.setScaler(l.hw.Name())
			return out, nil
		}
		l.dropHardware(err)
	}
	l.setScaler(l.soft.Name())
	return l.soft.Scale(f, w, h)
}

func (l *Layer) setScaler(name string) {
	l.mu.Lock()
	l.scaler = name
	l.mu.Unlock()
}

func (l *Layer) closeScalers() {
	if l.hw != nil {
		l.hw.Close()
		l.hw = nil
	}
}

// blackFrame returns a black I420 picture at the layer's size standing in for f: same number
// and time, none of its pixels.
func (l *Layer) blackFrame(f *media.Frame) *media.Frame {
	w, h := l.w, l.h
	if w == 0 {
		w, h = f.Width, f.Height
	}
	if l.black == nil || l.black.Width != w || l.black.Height != h {
		buf := make([]byte, w*h+2*(w/2)*(h/2))
		for i := range buf {
			buf[i] = 128 // neutral chroma
		}
		for i := range w * h {
			buf[i] = 16 // video black
		}
		l.black = &media.Frame{Format: media.PixelFormatI420, Width: w, Height: h,
			Planes:  [3][]byte{buf[:w*h], buf[w*h : w*h+w*h/4], buf[w*h+w*h/4:]},
			Strides: [3]int{w, w / 2, w / 2}}
	}
	black := *l.black
	black.Seq, black.CaptureTime = f.Seq, f.CaptureTime
	return &black
}

// encode runs one frame through the layer's encoder into its sink.
func (l *Layer) encode(f *media.Frame) {
	if bps := l.bitrate.Swap(0); bps > 0 {
		if err := l.enc.SetBitrate(int(bps)); err != nil {
			l.p.log.Warn("bitrate change failed", "layer", l.quality, "bps", bps, "err", err)
		}
	}
	requests, starts := l.keyframeRequests.Load(), l.startRequests.Load()
	now := time.Now()
	if requests != l.keyframeServed && now.Sub(l.lastForced) >= MinKeyframeGap ||
		starts != l.startServed && now.Sub(l.lastForced) >= MinStartKeyframeGap {
		l.enc.RequestKeyframe()
		l.lastForced = now
	}
	au, err := l.enc.Encode(f)
	if err != nil {
		l.fail(fmt.Errorf("encoder: %w", err), f)
		return
	}
	if len(au.Data) == 0 {
		return
	}
	if au.Keyframe { // forced or periodic, it serves every request made before this frame
		l.keyframeServed, l.startServed = requests, starts
	}
	if s := l.sink.Load(); s != nil {
		s.s.WriteAccessUnit(au)
	}
	l.observe(len(au.Data))
	l.p.observe(l, len(au.Data))
}

// fail records a dropped frame: the layer's status says why, and so does the pipeline's when
// it is the layer the status reports on.
func (l *Layer) fail(err error, f *media.Frame) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
	if l == l.p.topActive() {
		l.p.setErr(err)
	}
	if f == nil { // the frame was in the hardware scaler
		l.p.log.Warn("frame dropped", "layer", l.quality, "err", err)
		return
	}
	l.p.log.Warn("frame dropped", "layer", l.quality, "frame", f.Seq, "err", err)
}

func (l *Layer) observe(n int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = nil
	l.encoded++
	l.window = append(l.window, outputMark{at: now, bytes: n})
	cut := 0
	for cut < len(l.window) && now.Sub(l.window[cut].at) > statusWindow {
		cut++
	}
	l.window = append(l.window[:0], l.window[cut:]...)
}
