package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edgeflux/edge/internal/media"
)

// fakeSource emits a frame every interval until ctx ends, or fails after failAfter frames.
type fakeSource struct {
	interval  time.Duration
	failAfter int          // 0: never
	runs      atomic.Int32 // read by the test while the pipeline retries
	seq       uint64
}

func (s *fakeSource) Run(ctx context.Context, emit func(*media.Frame)) error {
	s.runs.Add(1)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.interval):
		}
		// Camera pixels are 200 everywhere: nothing the privacy picture could contain.
		emit(&media.Frame{Format: media.PixelFormatI420, Width: 2, Height: 2, Seq: s.seq, CaptureTime: time.Now(),
			Planes: [3][]byte{{200, 200, 200, 200}, {200}, {200}}, Strides: [3]int{2, 1, 1}})
		s.seq++
		if s.failAfter > 0 && n == s.failAfter {
			return errors.New("device unplugged")
		}
	}
}

// fakeEncoder makes every frame an access unit; keyframes when requested or every gop frames.
type fakeEncoder struct {
	lumas    []byte // first luma byte of every frame encoded
	gop      int
	frames   int
	forceKey bool
	bitrates []int
	fail     bool
}

func (e *fakeEncoder) Encode(f *media.Frame) (media.AccessUnit, error) {
	if e.fail {
		return media.AccessUnit{}, errors.New("wedged")
	}
	e.lumas = append(e.lumas, f.Planes[0][0])
	key := e.forceKey || (e.gop > 0 && e.frames%e.gop == 0)
	e.forceKey = false
	e.frames++
	return media.AccessUnit{Data: []byte{0, 0, 0, 1, 0x65}, Keyframe: key, FrameSeq: f.Seq, CaptureTime: f.CaptureTime}, nil
}
func (e *fakeEncoder) RequestKeyframe()         { e.forceKey = true }
func (e *fakeEncoder) SetBitrate(bps int) error { e.bitrates = append(e.bitrates, bps); return nil }
func (e *fakeEncoder) Name() string             { return "fake" }
func (e *fakeEncoder) Close() error             { return nil }

type sinkFunc func(media.AccessUnit)

func (f sinkFunc) WriteAccessUnit(au media.AccessUnit) { f(au) }

// recorder keeps the time of every keyframe the sink sees.
type recorder struct {
	mu        sync.Mutex
	keyframes []time.Time
	frames    int
}

func (r *recorder) WriteAccessUnit(au media.AccessUnit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames++
	if au.Keyframe {
		r.keyframes = append(r.keyframes, time.Now())
	}
}

func (r *recorder) snapshot() (int, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames, append([]time.Time(nil), r.keyframes...)
}

func start(t *testing.T, src Source, enc *fakeEncoder, sink Sink) (*Pipeline, context.CancelFunc) {
	p := New(Config{Source: src, Encoder: enc, Sink: sink, RetryMin: time.Second, RetryMax: 4 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, cancel
}

// TestStartKeyframesComeSooner: viewers joining at once share keyframes forced at most
// every MinStartKeyframeGap, so none waits much longer than that for its first picture, while
// repair requests (PLI) keep the longer gap.
func TestStartKeyframesComeSooner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p, _ := start(t, &fakeSource{interval: 10 * time.Millisecond}, &fakeEncoder{}, rec)
		l := p.Top()
		var waits []time.Duration
		for range 100 { // 100 viewers joining over a second, each waiting for its keyframe
			asked := time.Now()
			_, before := rec.snapshot()
			l.RequestStartKeyframe()
			for {
				time.Sleep(10 * time.Millisecond)
				if _, keys := rec.snapshot(); len(keys) > len(before) {
					waits = append(waits, keys[len(keys)-1].Sub(asked))
					break
				}
			}
		}
		_, keys := rec.snapshot()
		for i := 1; i < len(keys); i++ {
			if gap := keys[i].Sub(keys[i-1]); gap < MinStartKeyframeGap {
				t.Errorf("start keyframes %d and %d only %v apart", i-1, i, gap)
			}
		}
		for _, w := range waits {
			if w > MinStartKeyframeGap+20*time.Millisecond {
				t.Fatalf("a joining viewer waited %v for its keyframe; want at most about %v", w, MinStartKeyframeGap)
			}
		}
	})
}

func TestKeyframeRequestsAreThrottledNotDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p, _ := start(t, &fakeSource{interval: 10 * time.Millisecond}, &fakeEncoder{}, rec)
		begin := time.Now()
		// A PLI storm: 200 requests over 2 s, as 200 viewers joining would send.
		for range 200 {
			p.RequestKeyframe()
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second) // the last request must still be served after the storm
		_, keys := rec.snapshot()
		if len(keys) < 4 || len(keys) > 6 {
			t.Fatalf("%d keyframes for a 2 s storm; want one per %v (4 or 5)", len(keys), MinKeyframeGap)
		}
		for i := 1; i < len(keys); i++ {
			if gap := keys[i].Sub(keys[i-1]); gap < MinKeyframeGap {
				t.Errorf("keyframes %d and %d only %v apart", i-1, i, gap)
			}
		}
		if last := keys[len(keys)-1].Sub(begin); last < 2*time.Second {
			t.Errorf("last keyframe at %v: the final request of the storm was dropped", last)
		}
	})
}

func TestRequestDuringNaturalKeyframeIsStillServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		enc := &fakeEncoder{gop: 1000}
		src := &fakeSource{interval: 10 * time.Millisecond}
		p := New(Config{Source: src, Encoder: enc, Sink: sinkFunc(func(au media.AccessUnit) {
			rec.WriteAccessUnit(au)
			if au.FrameSeq == 0 { // a viewer's request arrives while the first IDR is being sent
				pAsk.RequestKeyframe()
			}
		})})
		pAsk = p
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go p.Run(ctx)
		time.Sleep(time.Second)
		cancel()
		synctest.Wait()
		_, keys := rec.snapshot()
		if len(keys) != 2 {
			t.Fatalf("%d keyframes; want the natural one and one for the request made while it was sent", len(keys))
		}
		if gap := keys[1].Sub(keys[0]); gap > 10*time.Millisecond {
			t.Errorf("the request waited %v behind a periodic keyframe; want the next frame", gap)
		}
	})
}

var pAsk *Pipeline

func TestBitrateChangeReachesEncoder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		enc := &fakeEncoder{}
		p, cancel := start(t, &fakeSource{interval: 10 * time.Millisecond}, enc, &recorder{})
		p.SetBitrate(1_500_000)
		p.SetBitrate(800_000) // only the latest matters
		time.Sleep(50 * time.Millisecond)
		cancel()
		synctest.Wait()
		if len(enc.bitrates) != 1 || enc.bitrates[0] != 800_000 {
			t.Fatalf("encoder got bitrates %v; want [800000]", enc.bitrates)
		}
	})
}

func TestFailedSourceIsRetriedAndStatusSaysWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		src := &fakeSource{interval: 10 * time.Millisecond, failAfter: 5}
		p, _ := start(t, src, &fakeEncoder{}, rec)
		time.Sleep(100 * time.Millisecond) // 5 frames, then the failure
		st := p.Status()
		if st.Live || st.Err == nil || st.Err.Error() != "device unplugged" {
			t.Fatalf("status after the source failed: %+v; want not live, err device unplugged", st)
		}
		time.Sleep(2 * time.Second) // retry after 1 s, fails again after 5 frames; next retry at +2 s
		synctest.Wait()             // the pipeline is idle now: its writes happen before our reads
		if src.runs.Load() != 2 {
			t.Errorf("source ran %d times in 2.1 s; want 2 (backoff 1 s, then 2 s)", src.runs.Load())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if src.runs.Load() != 3 {
			t.Errorf("source ran %d times by 4.1 s; want 3", src.runs.Load())
		}
		if frames, _ := rec.snapshot(); frames != 15 {
			t.Errorf("%d frames delivered over 3 runs of 5", frames)
		}
	})
}

func TestStatusWhileFlowing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := start(t, &fakeSource{interval: 40 * time.Millisecond}, &fakeEncoder{}, &recorder{})
		if st := p.Status(); st.Live {
			t.Fatalf("live before any frame: %+v", st)
		}
		time.Sleep(3 * time.Second)
		st := p.Status()
		if !st.Live || st.FPS < 24 || st.FPS > 26 || st.BitrateBps != st.FPS*5*8 {
			t.Fatalf("status at 25 fps of 5-byte frames: %+v", st)
		}
		if last := p.LastOutput(); time.Since(last) > 40*time.Millisecond {
			t.Errorf("LastOutput %v ago", time.Since(last))
		}
	})
}

func TestEncoderErrorDropsFrameAndReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p, _ := start(t, &fakeSource{interval: 10 * time.Millisecond}, &fakeEncoder{fail: true}, rec)
		time.Sleep(100 * time.Millisecond)
		st := p.Status()
		if frames, _ := rec.snapshot(); frames != 0 || st.Live || st.Err == nil {
			t.Fatalf("with a failing encoder: %d frames delivered, status %+v", frames, st)
		}
	})
}

func TestStartingIsNotDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := start(t, &fakeSource{interval: time.Hour}, &fakeEncoder{}, &recorder{})
		if st := p.Status(); st.Live || !st.Starting || st.Err != nil {
			t.Fatalf("new pipeline: %+v; want starting, no error", st)
		}
		time.Sleep(startGrace + time.Second)
		if st := p.Status(); st.Starting || st.Err == nil {
			t.Fatalf("no frame after %v: %+v; want down with a reason", startGrace, st)
		}
	})
}

func TestPrivacyMuteNeverEncodesCameraPixels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		enc := &fakeEncoder{}
		rec := &recorder{}
		p, cancel := start(t, &fakeSource{interval: 10 * time.Millisecond}, enc, rec)
		time.Sleep(55 * time.Millisecond)
		p.SetPrivacy(true)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		muted := len(enc.lumas)
		p.SetPrivacy(false)
		time.Sleep(MinKeyframeGap) // the second switch's keyframe waits out the throttle
		cancel()
		synctest.Wait()
		if !slicesEqual(enc.lumas[:5], 200) || !slicesEqual(enc.lumas[5:muted], 16) || !slicesEqual(enc.lumas[muted:], 200) {
			t.Fatalf("luma per encoded frame: %v; want camera (200), then only black (16) while muted, then camera", enc.lumas)
		}
		if _, keys := rec.snapshot(); len(keys) < 2 {
			t.Errorf("%d keyframes: switching privacy on and off should each bring one", len(keys))
		}
	})
}

func slicesEqual(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return len(b) > 0
}

func TestPausedSendsNothingButIsNotAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p, _ := start(t, &fakeSource{interval: 10 * time.Millisecond}, &fakeEncoder{}, rec)
		time.Sleep(55 * time.Millisecond)
		p.SetPaused(true)
		time.Sleep(time.Millisecond)
		before, _ := rec.snapshot()
		time.Sleep(3 * time.Second)
		after, _ := rec.snapshot()
		st := p.Status()
		if after != before || st.Live || !st.Paused || st.Err == nil {
			t.Fatalf("paused: %d frames sent, status %+v; want none, paused with a reason", after-before, st)
		}
		if time.Since(p.LastProgress()) > 20*time.Millisecond {
			t.Errorf("LastProgress %v old while paused with the camera running: the watchdog would call it a stall", time.Since(p.LastProgress()))
		}
		p.SetPaused(false)
		time.Sleep(50 * time.Millisecond)
		if _, keys := rec.snapshot(); len(keys) == 0 {
			t.Error("rejoining did not start with a keyframe")
		}
	})
}

// TestNobodyWatchingEncodesNothing: with its one layer off (no viewer), the camera runs, the
// encoder gets no frame, and the status and the watchdog see a working camera; turned back
// on, the first access unit out is a keyframe, with the next frame captured.
func TestNobodyWatchingEncodesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		enc := &fakeEncoder{}
		p, _ := start(t, &fakeSource{interval: 10 * time.Millisecond}, enc, rec)
		p.Top().SetActive(false)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		before := enc.frames
		time.Sleep(3 * time.Second)
		synctest.Wait()
		st := p.Status()
		if enc.frames != before || !st.Live || st.Err != nil {
			t.Fatalf("nobody watching: %d frames encoded, status %+v; want none, live", enc.frames-before, st)
		}
		if age := time.Since(p.LastProgress()); age > 20*time.Millisecond {
			t.Errorf("LastProgress %v old with the camera running: the watchdog would call it a stall", age)
		}
		n0, keys0 := rec.snapshot()
		asked := time.Now()
		p.Top().SetActive(true)
		time.Sleep(15 * time.Millisecond)
		synctest.Wait()
		n, keys := rec.snapshot()
		if n != n0+1 || len(keys) != len(keys0)+1 || keys[len(keys)-1].Sub(asked) > 10*time.Millisecond {
			t.Errorf("a viewer arriving got %d access units, %d keyframes in 15 ms; want the next frame, a keyframe", n-n0, len(keys)-len(keys0))
		}
	})
}
