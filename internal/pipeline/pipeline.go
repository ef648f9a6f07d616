// Package pipeline moves frames from a source through an encoder into a sink. It is the one
// place where keyframe requests are throttled, bitrate changes reach the encoder, a failed
// source is retried, and the flow of media is observed for the watchdog and the status page.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/internal/media"
)

// Source produces raw frames until ctx is done. A frame is valid only until emit returns.
type Source interface {
	Run(ctx context.Context, emit func(*media.Frame)) error
}

// Sink takes encoded access units, in order, from the pipeline's goroutine.
type Sink interface {
	WriteAccessUnit(au media.AccessUnit)
}

// MinKeyframeGap is the shortest time between two keyframes forced on request: a storm of
// PLIs from many viewers costs one IDR per gap, not one each. Periodic keyframes do not
// count, so a viewer joining just after one is not kept waiting.
const MinKeyframeGap = 500 * time.Millisecond

// Config wires a pipeline.
type Config struct {
	Source  Source
	Encoder encoder.Encoder
	Sink    Sink
	Log     *slog.Logger
	// RetryBackoff bounds the wait before a failed source is run again (doubling from Min).
	RetryMin, RetryMax time.Duration
}

// Pipeline is one camera's path from capture to the edge.
type Pipeline struct {
	src  Source
	enc  encoder.Encoder
	sink Sink
	log  *slog.Logger

	retryMin, retryMax time.Duration

	// Keyframe requests are counted rather than flagged so that an IDR encoded while a new
	// request arrives does not swallow it: the request is served only by a later IDR.
	keyframeRequests atomic.Uint64
	keyframeServed   uint64       // owned by the encode goroutine
	lastForced       time.Time    // when a keyframe was last forced on request
	bitrate          atomic.Int64 // pending bitrate change, 0 when none

	// privacy replaces every camera frame with a black one before the encoder sees it; paused
	// (the appliance left the call) drops frames before encoding. Both are set from any
	// goroutine and read per frame.
	privacy, paused atomic.Bool
	black           *media.Frame // the privacy picture, made at the camera's size on first use

	lastOutput   atomic.Int64 // unix nanoseconds of the last access unit handed to the sink
	lastProgress atomic.Int64 // unix nanoseconds of the last frame handled as intended

	created time.Time

	mu      sync.Mutex
	err     error        // why the source is not producing, nil while it is
	window  []outputMark // recent access units, for frame rate and bitrate
	encoded uint64
}

type outputMark struct {
	at    time.Time
	bytes int
}

// New makes a pipeline; Run starts it.
func New(cfg Config) *Pipeline {
	p := &Pipeline{
		src: cfg.Source, enc: cfg.Encoder, sink: cfg.Sink, log: cfg.Log,
		retryMin: cfg.RetryMin, retryMax: cfg.RetryMax,
		created: time.Now(),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.retryMin <= 0 {
		p.retryMin = time.Second
	}
	if p.retryMax < p.retryMin {
		p.retryMax = 10 * p.retryMin
	}
	return p
}

// Run captures, encodes and delivers until ctx is done. A source that fails is run again
// with backoff: viewers keep their sessions and get pictures again when it comes back.
func (p *Pipeline) Run(ctx context.Context) error {
	backoff := p.retryMin
	for {
		start := time.Now()
		err := p.src.Run(ctx, p.handle)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("source stopped")
		}
		p.setErr(err)
		if time.Since(start) > 2*p.retryMax {
			backoff = p.retryMin // it ran well for a while: start over
		}
		p.log.Warn("source failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.retryMax)
	}
}

// handle runs on the source's goroutine for every frame: encoding in line keeps capture to
// packet latency at one encode time, and a slow encoder slows capture instead of queueing.
func (p *Pipeline) handle(f *media.Frame) {
	if p.paused.Load() {
		p.lastProgress.Store(time.Now().UnixNano()) // not a stall: nobody wants pictures
		return
	}
	if p.privacy.Load() {
		f = p.privacyFrame(f)
	}
	if bps := p.bitrate.Swap(0); bps > 0 {
		if err := p.enc.SetBitrate(int(bps)); err != nil {
			p.log.Warn("bitrate change failed", "bps", bps, "err", err)
		}
	}
	requests := p.keyframeRequests.Load()
	now := time.Now()
	if requests != p.keyframeServed && now.Sub(p.lastForced) >= MinKeyframeGap {
		p.enc.RequestKeyframe()
		p.lastForced = now
	}
	au, err := p.enc.Encode(f)
	if err != nil {
		p.setErr(fmt.Errorf("encoder: %w", err))
		p.log.Warn("encode failed; frame dropped", "frame", f.Seq, "err", err)
		return
	}
	if len(au.Data) == 0 {
		return
	}
	if au.Keyframe { // forced or periodic, it serves every request made before this frame
		p.keyframeServed = requests
	}
	p.sink.WriteAccessUnit(au)
	p.observe(len(au.Data))
}

func (p *Pipeline) observe(n int) {
	now := time.Now()
	p.lastOutput.Store(now.UnixNano())
	p.lastProgress.Store(now.UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = nil
	p.encoded++
	p.window = append(p.window, outputMark{at: now, bytes: n})
	cut := 0
	for cut < len(p.window) && now.Sub(p.window[cut].at) > statusWindow {
		cut++
	}
	p.window = append(p.window[:0], p.window[cut:]...)
}

// statusWindow is how far back frame rate and bitrate are averaged.
const statusWindow = 2 * time.Second

// privacyFrame returns a black I420 picture standing in for f: same size, number and time,
// none of its pixels.
func (p *Pipeline) privacyFrame(f *media.Frame) *media.Frame {
	if p.black == nil || p.black.Width != f.Width || p.black.Height != f.Height {
		w, h := f.Width, f.Height
		buf := make([]byte, w*h+2*(w/2)*(h/2))
		for i := range buf {
			buf[i] = 128 // neutral chroma
		}
		for i := range w * h {
			buf[i] = 16 // video black
		}
		p.black = &media.Frame{Format: media.PixelFormatI420, Width: w, Height: h,
			Planes:  [3][]byte{buf[:w*h], buf[w*h : w*h+w*h/4], buf[w*h+w*h/4:]},
			Strides: [3]int{w, w / 2, w / 2}}
	}
	black := *p.black
	black.Seq, black.CaptureTime = f.Seq, f.CaptureTime
	return &black
}

// SetPrivacy turns privacy mute on or off: while on, no camera picture reaches the encoder,
// viewers see black. The switch takes effect on the next frame. Safe from any goroutine.
func (p *Pipeline) SetPrivacy(on bool) {
	if p.privacy.Swap(on) != on {
		p.RequestKeyframe() // viewers see the change at once, not at the next periodic IDR
	}
}

// Privacy reports whether privacy mute is on.
func (p *Pipeline) Privacy() bool { return p.privacy.Load() }

// SetPaused stops (or resumes) encoding while the camera keeps running: the appliance has
// left the call. Safe from any goroutine.
func (p *Pipeline) SetPaused(on bool) {
	if p.paused.Swap(on) && !on {
		p.RequestKeyframe() // rejoining viewers need a picture to start from
	}
}

// Paused reports whether the pipeline is paused.
func (p *Pipeline) Paused() bool { return p.paused.Load() }

// RequestKeyframe asks for an IDR soon; requests are coalesced and at most one IDR per
// MinKeyframeGap is forced. Safe from any goroutine.
func (p *Pipeline) RequestKeyframe() { p.keyframeRequests.Add(1) }

// SetBitrate changes the encoder's target bitrate before the next frame. Safe from any goroutine.
func (p *Pipeline) SetBitrate(bps int) { p.bitrate.Store(int64(bps)) }

// LastOutput is when the last access unit left the encoder (zero before the first).
func (p *Pipeline) LastOutput() time.Time {
	ns := p.lastOutput.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// startGrace is how long a new pipeline counts as starting rather than down.
const startGrace = 5 * time.Second

// LastProgress is when the pipeline last handled a frame as intended: encoded and sent, or
// deliberately dropped while paused. The watchdog uses it: a stall is no progress at all.
func (p *Pipeline) LastProgress() time.Time {
	ns := p.lastProgress.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Status is a snapshot of the flow of media.
type Status struct {
	Live       bool
	Starting   bool  // no frame yet, no failure yet, still within startGrace
	Paused     bool  // left the call on purpose
	Privacy    bool  // viewers see black
	Err        error // why it is neither live nor starting
	FPS        float64
	BitrateBps float64
	Encoded    uint64
}

// Status reports whether media flowed recently, and at what rate.
func (p *Pipeline) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Err: p.err, Encoded: p.encoded, Paused: p.paused.Load(), Privacy: p.privacy.Load()}
	now := time.Now()
	var bytes int
	var frames int
	for _, m := range p.window {
		if now.Sub(m.at) <= statusWindow {
			bytes += m.bytes
			frames++
		}
	}
	s.Live = frames > 0 && p.err == nil && !s.Paused
	s.Starting = !s.Live && !s.Paused && p.err == nil && p.encoded == 0 && now.Sub(p.created) < startGrace
	if s.Paused && s.Err == nil {
		s.Err = errors.New("the appliance has left the call")
	}
	if !s.Live && !s.Starting && s.Err == nil {
		s.Err = errors.New("no frames for " + statusWindow.String())
	}
	s.FPS = float64(frames) / statusWindow.Seconds()
	s.BitrateBps = float64(bytes*8) / statusWindow.Seconds()
	return s
}

func (p *Pipeline) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}
