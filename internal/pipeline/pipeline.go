// Package pipeline moves frames from a source through one or more encoders into sinks. It is
// the one place where keyframe requests are throttled, bitrate changes reach an encoder, a
// failed source is retried, and the flow of media is observed for the watchdog and the status
// page. Several encodes of the one source at different sizes are layers (layer.go).
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// MinStartKeyframeGap is the same for keyframes viewers start on (joins, layer switches): a
// crowd joining at once shares them, and none waits more than about this for a first picture.
const MinStartKeyframeGap = 150 * time.Millisecond

// Config wires a pipeline: one encode (Encoder and Sink) or several (Layers).
type Config struct {
	Source Source
	// Encoder and Sink make a pipeline of one layer at the source's size, encoded in line on
	// the source's goroutine. They are ignored when Layers is set.
	Encoder encoder.Encoder
	Sink    Sink
	// Layers are encodes of the source at different sizes (see LayerConfig). With one layer
	// it is encoded in line; with two or three each has its own goroutine.
	Layers []LayerConfig
	Log    *slog.Logger
	// RetryBackoff bounds the wait before a failed source is run again (doubling from Min).
	RetryMin, RetryMax time.Duration
}

// Pipeline is one camera's path from capture to the edge.
type Pipeline struct {
	src Source
	log *slog.Logger

	retryMin, retryMax time.Duration

	// layers from the smallest to the largest; with one layer it is encoded in line.
	layers []*Layer

	// privacy replaces every camera frame with a black one before any encoder sees it; paused
	// (the appliance left the call) drops frames before encoding. Both are set from any
	// goroutine and read per frame, and apply to every layer.
	privacy, paused atomic.Bool

	lastOutput   atomic.Int64 // unix nanoseconds of the last access unit handed to a sink
	lastProgress atomic.Int64 // unix nanoseconds of the last frame handled as intended
	lastIdle     atomic.Int64 // unix nanoseconds of the last frame no layer wanted

	created time.Time

	mu      sync.Mutex
	err     error        // why the source (or the top layer's encoder) is not producing
	window  []outputMark // recent access units of the top active layer, for frame rate and bitrate
	encoded uint64
}

type outputMark struct {
	at    time.Time
	bytes int
}

// New makes a pipeline; Run starts it. Layers are sorted from the smallest to the largest.
func New(cfg Config) *Pipeline {
	p := &Pipeline{
		src: cfg.Source, log: cfg.Log,
		retryMin: cfg.RetryMin, retryMax: cfg.RetryMax,
		created: time.Now(),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	layers := cfg.Layers
	if len(layers) == 0 {
		// The size is the source's, whatever it is: the layer never scales.
		layers = []LayerConfig{{Quality: QualityHigh, Encoder: cfg.Encoder, Sink: cfg.Sink}}
	}
	for _, lc := range layers {
		p.layers = append(p.layers, newLayer(p, lc))
	}
	slices.SortStableFunc(p.layers, func(a, b *Layer) int { return a.w*a.h - b.w*b.h })
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
	// Scalers close last, after the layers' goroutines (which may wait on one) have ended.
	defer func() {
		for _, l := range p.layers {
			l.closeScalers()
		}
	}()
	if len(p.layers) > 1 {
		var workers sync.WaitGroup
		for _, l := range p.layers {
			l.in = make(chan *media.Frame, 1)
			workers.Go(l.work)
		}
		defer func() {
			for _, l := range p.layers {
				close(l.in)
			}
			workers.Wait()
		}()
	}
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

// handle runs on the source's goroutine for every frame. One layer is encoded in line: capture
// to packet latency stays at one encode time, and a slow encoder slows capture instead of
// queueing. Several layers each get the frame scaled (or copied) into memory of their own and
// encode on their own goroutine; a layer still busy with an earlier frame drops this one, so a
// slow layer never holds up the others or the camera.
func (p *Pipeline) handle(f *media.Frame) {
	if p.paused.Load() {
		p.lastProgress.Store(time.Now().UnixNano()) // not a stall: nobody wants pictures
		return
	}
	muted := p.privacy.Load()
	if len(p.layers) == 1 {
		l := p.layers[0]
		if !l.active.Load() {
			p.markIdle()
			return
		}
		if muted {
			f = l.blackFrame(f)
		} else if l.w != 0 && (f.Width != l.w || f.Height != l.h) {
			var err error
			if f, err = l.scale(f); err != nil {
				l.fail(fmt.Errorf("scale: %w", err), f)
				return
			}
		}
		l.encode(f)
		return
	}
	if l := p.onlyActive(); l != nil && (l.w == 0 || l.w == f.Width && l.h == f.Height) {
		// Only the full-size layer is wanted (the usual idle state, the smaller layers
		// paused): encode in line as with one layer, with no copy of the frame.
		if !l.busy.CompareAndSwap(false, true) {
			l.dropped.Add(1) // its goroutine is still on a frame from before
			return
		}
		if muted {
			f = l.blackFrame(f)
		}
		l.encode(f)
		l.busy.Store(false)
		return
	}
	idle := true
	for _, l := range p.layers {
		if !l.active.Load() {
			continue
		}
		idle = false
		if !l.busy.CompareAndSwap(false, true) {
			l.dropped.Add(1)
			continue
		}
		in := f
		switch {
		case muted:
			in = l.blackFrame(f)
		case l.submit(f):
			in = nil // the layer's goroutine waits for the hardware scaler
		default:
			var err error
			if in, err = l.scale(f); err != nil {
				l.busy.Store(false)
				l.fail(fmt.Errorf("scale: %w", err), f)
				continue
			}
		}
		l.in <- in // never blocks: busy says the worker took the previous one
	}
	if idle {
		p.markIdle()
	}
}

// markIdle records a frame nobody wanted encoded (dynacast turned every layer off): the
// camera works and nothing is wanted, which is neither a stall for the watchdog nor a
// stream down.
func (p *Pipeline) markIdle() {
	now := time.Now().UnixNano()
	p.lastProgress.Store(now)
	p.lastIdle.Store(now)
}

// observe records an access unit of layer l: every layer's output is progress for the
// watchdog; the top active layer's is the rate the status reports.
func (p *Pipeline) observe(l *Layer, n int) {
	now := time.Now()
	p.lastOutput.Store(now.UnixNano())
	p.lastProgress.Store(now.UnixNano())
	if l != p.topActive() {
		return
	}
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

// onlyActive is the one active layer, or nil when none or several are.
func (p *Pipeline) onlyActive() *Layer {
	var only *Layer
	for _, l := range p.layers {
		if l.active.Load() {
			if only != nil {
				return nil
			}
			only = l
		}
	}
	return only
}

// topActive is the largest active layer (the largest when none is active).
func (p *Pipeline) topActive() *Layer {
	for i := len(p.layers) - 1; i >= 0; i-- {
		if p.layers[i].active.Load() {
			return p.layers[i]
		}
	}
	return p.layers[len(p.layers)-1]
}

// statusWindow is how far back frame rate and bitrate are averaged.
const statusWindow = 2 * time.Second

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

// RequestKeyframe asks every layer for an IDR soon; requests are coalesced and at most one
// IDR per MinKeyframeGap is forced per layer. Safe from any goroutine.
func (p *Pipeline) RequestKeyframe() {
	for _, l := range p.layers {
		l.RequestKeyframe()
	}
}

// SetBitrate changes the target bitrate of the largest layer (the one edged publishes today)
// before its next frame; the other layers have Layer.SetBitrate. Safe from any goroutine.
func (p *Pipeline) SetBitrate(bps int) { p.Top().SetBitrate(bps) }

// Layers returns the layers, from the smallest to the largest.
func (p *Pipeline) Layers() []*Layer { return slices.Clone(p.layers) }

// Top is the largest layer.
func (p *Pipeline) Top() *Layer { return p.layers[len(p.layers)-1] }

// Layer returns the layer of quality q, or nil.
func (p *Pipeline) Layer(q Quality) *Layer {
	for _, l := range p.layers {
		if l.quality == q {
			return l
		}
	}
	return nil
}

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
	idle := now.Sub(time.Unix(0, p.lastIdle.Load())) <= statusWindow
	s.Live = (frames > 0 || idle) && p.err == nil && !s.Paused
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
