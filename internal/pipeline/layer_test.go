package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edgeflux/edge/internal/media"
)

// camSource emits w x h I420 frames of luma 200 every interval.
type camSource struct {
	w, h     int
	interval time.Duration
	frames   int // emitted, read after the pipeline stopped
}

func (s *camSource) Run(ctx context.Context, emit func(*media.Frame)) error {
	buf := make([]byte, s.w*s.h*3/2)
	for i := range buf {
		buf[i] = 200
	}
	for seq := uint64(0); ; seq++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.interval):
		}
		f := &media.Frame{Format: media.PixelFormatI420, Width: s.w, Height: s.h, Seq: seq, CaptureTime: time.Now(),
			Planes:  [3][]byte{buf[:s.w*s.h], buf[s.w*s.h : s.w*s.h*5/4], buf[s.w*s.h*5/4:]},
			Strides: [3]int{s.w, s.w / 2, s.w / 2}}
		emit(f)
		s.frames++
		// The camera requeues the buffer once emit returns: scribble over it, so a layer
		// that read it later would see it.
		for i := range buf {
			buf[i] = 99
		}
		for i := range buf {
			buf[i] = 200
		}
	}
}

// sizedEncoder records the size and first luma of every frame it encodes; delay makes it slow.
type sizedEncoder struct {
	fakeEncoder
	mu    sync.Mutex
	sizes [][2]int
	delay time.Duration
}

func (e *sizedEncoder) Encode(f *media.Frame) (media.AccessUnit, error) {
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	e.mu.Lock()
	e.sizes = append(e.sizes, [2]int{f.Width, f.Height})
	e.mu.Unlock()
	return e.fakeEncoder.Encode(f)
}

type layerRig struct {
	p    *Pipeline
	encs map[Quality]*sizedEncoder
	recs map[Quality]*recorder
	src  *camSource
	stop context.CancelFunc
}

// threeLayers runs a 64x32 source at 100 fps into layers of 64x32, 32x16 and 16x8.
func threeLayers(t *testing.T, slow Quality, delay time.Duration, scalers map[Quality]Scaler) *layerRig {
	r := &layerRig{encs: map[Quality]*sizedEncoder{}, recs: map[Quality]*recorder{},
		src: &camSource{w: 64, h: 32, interval: 10 * time.Millisecond}}
	var layers []LayerConfig
	for q, size := range map[Quality][2]int{QualityHigh: {64, 32}, QualityMedium: {32, 16}, QualityLow: {16, 8}} {
		e := &sizedEncoder{}
		if q == slow {
			e.delay = delay
		}
		r.encs[q], r.recs[q] = e, &recorder{}
		layers = append(layers, LayerConfig{Quality: q, Width: size[0], Height: size[1], Encoder: e, Sink: r.recs[q], Scaler: scalers[q]})
	}
	r.p = New(Config{Source: r.src, Layers: layers})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.p.Run(ctx); close(done) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	return r
}

func TestLayersEncodeEachSizeFromOneSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := threeLayers(t, -1, 0, nil)
		time.Sleep(time.Second + 5*time.Millisecond)
		r.stop()
		ls := r.p.Layers()
		if got := [3]Quality{ls[0].Quality(), ls[1].Quality(), r.p.Top().Quality()}; got != [3]Quality{QualityLow, QualityMedium, QualityHigh} {
			t.Errorf("layers in order %v; want low, medium, high", got)
		}
		for q, want := range map[Quality][2]int{QualityHigh: {64, 32}, QualityMedium: {32, 16}, QualityLow: {16, 8}} {
			e := r.encs[q]
			if len(e.sizes) != r.src.frames {
				t.Errorf("%v layer encoded %d of %d frames", q, len(e.sizes), r.src.frames)
			}
			for i, s := range e.sizes {
				if s != want {
					t.Fatalf("%v layer frame %d is %dx%d; want %dx%d", q, i, s[0], s[1], want[0], want[1])
				}
			}
			if !slicesEqual(e.lumas, 200) {
				t.Errorf("%v layer lumas %v; want the camera's 200 throughout (never the requeued buffer)", q, e.lumas)
			}
			if n, _ := r.recs[q].snapshot(); n != r.src.frames {
				t.Errorf("%v layer's sink got %d access units of %d frames", q, n, r.src.frames)
			}
			st := r.p.Layer(q).Status()
			if st.Scaler != "software" || st.Encoded != uint64(r.src.frames) || st.Dropped != 0 {
				t.Errorf("%v layer status %+v", q, st)
			}
		}
		if st := r.p.Status(); st.Encoded != uint64(r.src.frames) {
			t.Errorf("pipeline status counts %d access units; want the top layer's %d", st.Encoded, r.src.frames)
		}
	})
}

func TestSlowLayerDropsFramesAndStallsNoOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The medium layer takes 35 ms a frame at 100 fps: it can encode one frame in four.
		r := threeLayers(t, QualityMedium, 35*time.Millisecond, nil)
		time.Sleep(time.Second + 5*time.Millisecond)
		r.stop()
		for _, q := range []Quality{QualityLow, QualityHigh} {
			if n := len(r.encs[q].sizes); n != r.src.frames {
				t.Errorf("%v layer encoded %d of %d frames next to a slow layer", q, n, r.src.frames)
			}
		}
		slow := r.p.Layer(QualityMedium).Status()
		if n := len(r.encs[QualityMedium].sizes); n < r.src.frames/4-1 || n > r.src.frames/3 {
			t.Errorf("slow layer encoded %d of %d frames; want about one in four", n, r.src.frames)
		}
		if slow.Dropped == 0 || int(slow.Dropped)+len(r.encs[QualityMedium].sizes) != r.src.frames {
			t.Errorf("slow layer dropped %d and encoded %d of %d frames; want every frame one or the other",
				slow.Dropped, len(r.encs[QualityMedium].sizes), r.src.frames)
		}
	})
}

func TestInactiveLayerEncodesNothingAndRestartsOnAKeyframe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := threeLayers(t, -1, 0, nil)
		low := r.p.Layer(QualityLow)
		time.Sleep(time.Second) // past the keyframe throttle
		low.SetActive(false)
		time.Sleep(5 * time.Millisecond)
		synctest.Wait()
		before := len(r.encs[QualityLow].sizes)
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if after := len(r.encs[QualityLow].sizes); after != before || low.Active() {
			t.Fatalf("inactive layer encoded %d frames", after-before)
		}
		high := len(r.encs[QualityHigh].sizes)
		low.SetActive(true)
		time.Sleep(15 * time.Millisecond)
		r.stop()
		if _, keys := r.recs[QualityLow].snapshot(); len(keys) == 0 {
			t.Error("reactivated layer did not start with a keyframe")
		}
		if _, keys := r.recs[QualityHigh].snapshot(); len(keys) != 0 {
			t.Errorf("%d keyframes on the high layer; reactivating the low one should force none there", len(keys))
		}
		if len(r.encs[QualityHigh].sizes) <= high {
			t.Error("the high layer stopped while the low one was off")
		}
	})
}

func TestLayerKeyframesAndBitratesAreTheirOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := threeLayers(t, -1, 0, nil)
		time.Sleep(time.Second)
		r.p.Layer(QualityMedium).RequestKeyframe()
		r.p.Layer(QualityLow).SetBitrate(150_000)
		r.p.SetBitrate(1_800_000) // the top layer's
		time.Sleep(50 * time.Millisecond)
		r.stop()
		for q, want := range map[Quality]int{QualityLow: 0, QualityMedium: 1, QualityHigh: 0} {
			if _, keys := r.recs[q].snapshot(); len(keys) != want {
				t.Errorf("%v layer: %d keyframes; want %d", q, len(keys), want)
			}
		}
		if b := r.encs[QualityLow].bitrates; len(b) != 1 || b[0] != 150_000 {
			t.Errorf("low layer bitrates %v", b)
		}
		if b := r.encs[QualityHigh].bitrates; len(b) != 1 || b[0] != 1_800_000 {
			t.Errorf("high layer bitrates %v", b)
		}
		if b := r.encs[QualityMedium].bitrates; len(b) != 0 {
			t.Errorf("medium layer bitrates %v; want none", b)
		}
	})
}

func TestPrivacyAndPauseApplyToEveryLayer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := threeLayers(t, -1, 0, nil)
		time.Sleep(55 * time.Millisecond)
		r.p.SetPrivacy(true)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		muted := map[Quality]int{}
		for q, e := range r.encs {
			muted[q] = len(e.lumas)
		}
		r.p.SetPaused(true)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		paused := map[Quality]int{}
		for q, e := range r.encs {
			paused[q] = len(e.lumas)
		}
		time.Sleep(200 * time.Millisecond)
		r.stop()
		for q, e := range r.encs {
			if !slicesEqual(e.lumas[:5], 200) || !slicesEqual(e.lumas[5:muted[q]], 16) {
				t.Errorf("%v layer lumas %v; want camera (200), then only black (16) while muted", q, e.lumas)
			}
			if len(e.lumas) != paused[q] {
				t.Errorf("%v layer encoded %d frames while paused", q, len(e.lumas)-paused[q])
			}
			for i, s := range e.sizes[5:] {
				if s != e.sizes[0] {
					t.Errorf("%v layer black frame %d is %dx%d; want the layer's %dx%d", q, i, s[0], s[1], e.sizes[0][0], e.sizes[0][1])
					break
				}
			}
		}
	})
}

// fakeScaler stands in for a hardware scaler: it fills the picture with its own luma, or
// fails from the failAt-th call on.
type fakeScaler struct {
	calls, failAt int
	closed        bool
	pic           media.Frame
}

func (s *fakeScaler) Scale(f *media.Frame, w, h int) (*media.Frame, error) {
	s.calls++
	if s.failAt > 0 && s.calls >= s.failAt {
		return nil, errors.New("device wedged")
	}
	buf := make([]byte, w*h*3/2)
	for i := range buf {
		buf[i] = 77
	}
	s.pic = media.Frame{Format: media.PixelFormatI420, Width: w, Height: h, Seq: f.Seq,
		Planes: [3][]byte{buf[:w*h], buf[w*h : w*h*5/4], buf[w*h*5/4:]}, Strides: [3]int{w, w / 2, w / 2}}
	return &s.pic, nil
}
func (s *fakeScaler) Name() string { return "fake-m2m" }
func (s *fakeScaler) Close() error { s.closed = true; return nil }

func TestHardwareScalerIsUsedAndSoftwareTakesOverWhenItFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		good, bad := &fakeScaler{}, &fakeScaler{failAt: 4}
		r := threeLayers(t, -1, 0, map[Quality]Scaler{QualityLow: good, QualityMedium: bad})
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if st := r.p.Layer(QualityLow).Status(); st.Scaler != "fake-m2m" {
			t.Errorf("low layer scaled by %q; want the hardware scaler", st.Scaler)
		}
		if st := r.p.Layer(QualityMedium).Status(); st.Scaler != "software" {
			t.Errorf("medium layer scaled by %q after its hardware scaler failed; want software", st.Scaler)
		}
		r.stop()
		if !slicesEqual(r.encs[QualityLow].lumas, 77) {
			t.Errorf("low layer lumas %v; want the hardware scaler's 77", r.encs[QualityLow].lumas)
		}
		med := r.encs[QualityMedium].lumas
		if !slicesEqual(med[:3], 77) || !slicesEqual(med[3:], 200) || len(med) != r.src.frames {
			t.Errorf("medium layer lumas %v; want 3 from hardware, then software, no frame lost", med)
		}
		if bad.calls != 4 || !bad.closed || !good.closed {
			t.Errorf("failed scaler called %d times (want 4, none after the failure), closed %v; good one closed %v", bad.calls, bad.closed, good.closed)
		}
	})
}

func TestSetSinkRedirectsAndAsksForAKeyframe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := threeLayers(t, -1, 0, nil)
		time.Sleep(time.Second)
		later := &recorder{}
		r.p.Layer(QualityLow).SetSink(later)
		time.Sleep(100 * time.Millisecond)
		r.stop()
		n, keys := later.snapshot()
		if n == 0 || len(keys) == 0 {
			t.Errorf("new sink got %d access units, %d keyframes; want some, starting with a keyframe", n, len(keys))
		}
	})
}

func TestEveryLayerOffIsNeitherAStallNorDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := threeLayers(t, -1, 0, nil)
		time.Sleep(100 * time.Millisecond)
		for _, l := range r.p.Layers() {
			l.SetActive(false)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		before := len(r.encs[QualityHigh].sizes)
		time.Sleep(3 * time.Second)
		st := r.p.Status()
		if !st.Live || st.Err != nil {
			t.Errorf("status with every layer off and the camera running: %+v; want live", st)
		}
		if age := time.Since(r.p.LastProgress()); age > 20*time.Millisecond {
			t.Errorf("LastProgress %v old: the watchdog would call it a stall", age)
		}
		r.stop()
		if n := len(r.encs[QualityHigh].sizes) - before; n != 0 {
			t.Errorf("%d frames encoded with every layer off", n)
		}
	})
}

// slowDevice is an asynchronous hardware scaler: Submit copies the frame's luma, Wait takes
// delay (the device working) and fails from the failAt-th picture on.
type slowDevice struct {
	fakeScaler
	delay   time.Duration
	luma    byte
	w, h    int
	waits   int
	submits int
}

func (s *slowDevice) Submit(f *media.Frame, w, h int) error {
	s.submits++
	s.luma, s.w, s.h = f.Planes[0][0], w, h
	return nil
}

func (s *slowDevice) Wait() (*media.Frame, error) {
	s.waits++
	time.Sleep(s.delay)
	if s.failAt > 0 && s.waits >= s.failAt {
		return nil, errors.New("device wedged")
	}
	buf := make([]byte, s.w*s.h*3/2)
	for i := range buf {
		buf[i] = s.luma - 1 // tells the device's pictures from software's
	}
	s.pic = media.Frame{Format: media.PixelFormatI420, Width: s.w, Height: s.h,
		Planes: [3][]byte{buf[:s.w*s.h], buf[s.w*s.h : s.w*s.h*5/4], buf[s.w*s.h*5/4:]}, Strides: [3]int{s.w, s.w / 2, s.w / 2}}
	return &s.pic, nil
}

func TestSlowHardwareScalerHoldsUpOnlyItsLayer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 25 ms per picture at 100 fps, failing at the 6th: the low layer gets one frame in
		// three while the device works, loses the 6th, then scales in software.
		dev := &slowDevice{delay: 25 * time.Millisecond, fakeScaler: fakeScaler{failAt: 6}}
		r := threeLayers(t, -1, 0, map[Quality]Scaler{QualityLow: dev})
		time.Sleep(time.Second + 5*time.Millisecond)
		r.stop()
		for _, q := range []Quality{QualityMedium, QualityHigh} {
			if n := len(r.encs[q].sizes); n != r.src.frames {
				t.Errorf("%v layer encoded %d of %d frames next to a slow hardware scaler", q, n, r.src.frames)
			}
		}
		low := r.encs[QualityLow].lumas
		if !slicesEqual(low[:5], 199) || !slicesEqual(low[5:], 200) {
			t.Errorf("low layer lumas %v; want 5 pictures from the device (199), then software (200)", low)
		}
		st := r.p.Layer(QualityLow).Status()
		if dev.submits != 6 || !dev.closed || st.Scaler != "software" {
			t.Errorf("device: %d submits, closed %v; layer scaler %q", dev.submits, dev.closed, st.Scaler)
		}
		if int(st.Dropped)+len(low)+1 != r.src.frames {
			t.Errorf("low layer: %d dropped + %d encoded + 1 lost in the device != %d frames", st.Dropped, len(low), r.src.frames)
		}
	})
}
