package testpattern

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/media"
)

func newSource(t testing.TB, w, h int) *Source {
	t.Helper()
	s, err := New(Config{Width: w, Height: h, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testSizes are the picture sizes the tests draw: common ones, the smallest usable, and one
// not a multiple of the block size.
func testSizes() []struct{ w, h int } {
	return []struct{ w, h int }{{640, 480}, {1280, 720}, {320, 240}, {1920, 1080}, {160, 120}, {642, 362}}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"vga", Config{640, 480, 30}, true},
		{"qvga", Config{320, 240, 1}, true},
		{"smallest usable", Config{160, 120, 30}, true},
		{"odd width", Config{641, 480, 30}, false},
		{"odd height", Config{640, 481, 30}, false},
		{"too narrow", Config{62, 480, 30}, false},
		{"too low", Config{640, 62, 30}, false},
		{"band does not fit", Config{128, 96, 30}, false},
		{"zero fps", Config{640, 480, 0}, false},
		{"negative fps", Config{640, 480, -1}, false},
		{"huge", Config{1 << 20, 480, 30}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New(%+v) error = %v, want ok %v", tt.cfg, err, tt.ok)
			}
			if err == nil && s.Config() != tt.cfg {
				t.Errorf("Config() = %+v", s.Config())
			}
		})
	}
}

func TestDrawFrame(t *testing.T) {
	s := newSource(t, 640, 480)
	f := s.Draw(7, time.UnixMilli(1))
	if f.Format != media.PixelFormatI420 || f.Width != 640 || f.Height != 480 || f.Seq != 7 || !f.CaptureTime.Equal(time.UnixMilli(1)) {
		t.Fatalf("frame header %v %dx%d seq %d time %v", f.Format, f.Width, f.Height, f.Seq, f.CaptureTime)
	}
	want := [3]int{640, 320, 320}
	for i, n := range []int{640 * 480, 320 * 240, 320 * 240} {
		if len(f.Planes[i]) != n || f.Strides[i] != want[i] {
			t.Errorf("plane %d: len %d stride %d", i, len(f.Planes[i]), f.Strides[i])
		}
	}
	// The ring: three distinct buffers, then the first again.
	g, h, k := s.Draw(8, time.Time{}), s.Draw(9, time.Time{}), s.Draw(10, time.Time{})
	if f == g || g == h || f == h || k != f {
		t.Error("Draw does not cycle through 3 buffers")
	}
}

func TestDrawDecodeRoundTrip(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, sz := range testSizes() {
		s := newSource(t, sz.w, sz.h)
		for _, tc := range []struct {
			seq uint64
			t   time.Time
		}{
			{0, base},
			{1, base.Add(33*time.Millisecond + 999*time.Microsecond)},
			{123456, base.Add(time.Hour)},
			{1<<32 - 1, time.UnixMilli(1<<48 - 1)},
			{1 << 32, time.UnixMilli(0)}, // only the low 32 bits of Seq are carried
		} {
			f := s.Draw(tc.seq, tc.t)
			seq, at, err := Decode(f.Planes[0], f.Strides[0], f.Width, f.Height)
			if err != nil {
				t.Fatalf("%dx%d seq %d: %v", sz.w, sz.h, tc.seq, err)
			}
			if seq != tc.seq&(1<<32-1) || !at.Equal(tc.t.Truncate(time.Millisecond)) {
				t.Errorf("%dx%d: decoded %d %v, want %d %v", sz.w, sz.h, seq, at, tc.seq, tc.t)
			}
		}
	}
}

func TestDecodeWithStrideAndCopy(t *testing.T) {
	s := newSource(t, 320, 240)
	f := s.Draw(42, time.UnixMilli(1_700_000_000_123))
	// A decoder's output plane, padded to a larger stride.
	const stride = 384
	y := make([]byte, stride*240)
	for r := range 240 {
		copy(y[r*stride:], f.Planes[0][r*320:(r+1)*320])
	}
	seq, at, err := Decode(y, stride, 320, 240)
	if err != nil || seq != 42 || at.UnixMilli() != 1_700_000_000_123 {
		t.Fatalf("Decode = %d %v %v", seq, at, err)
	}
}

// degrade adds uniform noise of ±amp to every luma sample and blurs with a 3x3 box filter.
func degrade(y []byte, w, h, amp int, rng *rand.Rand) []byte {
	noisy := make([]int, len(y))
	for i, v := range y {
		noisy[i] = min(255, max(0, int(v)+rng.IntN(2*amp+1)-amp))
	}
	out := make([]byte, len(y))
	for r := range h {
		for c := range w {
			sum, n := 0, 0
			for dr := -1; dr <= 1; dr++ {
				for dc := -1; dc <= 1; dc++ {
					rr, cc := r+dr, c+dc
					if rr >= 0 && rr < h && cc >= 0 && cc < w {
						sum += noisy[rr*w+cc]
						n++
					}
				}
			}
			out[r*w+c] = byte(sum / n)
		}
	}
	return out
}

func TestDecodeSurvivesNoiseAndBlur(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sz := range testSizes() {
		s := newSource(t, sz.w, sz.h)
		for i := range 5 {
			seq, at := uint64(rng.Uint32()), time.UnixMilli(rng.Int64N(1<<47))
			f := s.Draw(seq, at)
			y := degrade(f.Planes[0], sz.w, sz.h, 40, rng)
			got, gotAt, err := Decode(y, sz.w, sz.w, sz.h)
			if err != nil || got != seq || !gotAt.Equal(at) {
				t.Errorf("%dx%d #%d: Decode = %d %v %v, want %d %v", sz.w, sz.h, i, got, gotAt, err, seq, at)
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	const w, h = 640, 480
	flat := func(v byte) []byte { return bytes.Repeat([]byte{v}, w*h) }
	s := newSource(t, w, h)
	broken := bytes.Clone(s.Draw(5, time.UnixMilli(99)).Planes[0])
	// Invert one block of the time field: the checksum must catch it.
	l := barcodeLayout(w)
	bit := 8 + 32 + 20
	for r := bit / l.cols * l.block; r < (bit/l.cols+1)*l.block; r++ {
		for c := bit % l.cols * l.block; c < (bit%l.cols+1)*l.block; c++ {
			broken[r*w+c] = 255 - broken[r*w+c]
		}
	}
	tests := []struct {
		name                  string
		y                     []byte
		stride, width, height int
		noBarcode             bool // error wraps ErrNoBarcode, else it is an argument error
	}{
		{"flat gray", flat(128), w, w, h, true},
		{"flat black", flat(0), w, w, h, true},
		{"flat white", flat(255), w, w, h, true},
		{"one block flipped", broken, w, w, h, true},
		{"too small for a barcode", flat(128), 4, 4, 4, true},
		{"band taller than picture", flat(128), w, w, 40, true},
		{"stride below width", flat(128), w - 2, w, h, false},
		{"buffer too short", flat(128)[:w*h-1], w, w, h, false},
		{"zero width", flat(128), w, 0, h, false},
		{"negative height", flat(128), w, w, -1, false},
		{"nil buffer", nil, w, w, h, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Decode(tt.y, tt.stride, tt.width, tt.height)
			if err == nil {
				t.Fatal("Decode succeeded")
			}
			if errors.Is(err, ErrNoBarcode) != tt.noBarcode {
				t.Errorf("error %v: wraps ErrNoBarcode = %v, want %v", err, !tt.noBarcode, tt.noBarcode)
			}
		})
	}
}

func TestDecodeNoFalsePositives(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const w, h = 320, 240
	y := make([]byte, w*h)
	for i := range 1000 {
		// Alternate white noise with random blocky pictures, which look more like a barcode.
		if i%2 == 0 {
			for j := range y {
				y[j] = byte(rng.Uint32())
			}
		} else {
			for r := range h / 8 {
				for c := range w / 8 {
					v := byte(lumaBlack)
					if rng.IntN(2) == 1 {
						v = lumaWhite
					}
					for dr := range 8 {
						for dc := range 8 {
							y[(r*8+dr)*w+c*8+dc] = v
						}
					}
				}
			}
		}
		if seq, at, err := Decode(y, w, w, h); !errors.Is(err, ErrNoBarcode) {
			t.Fatalf("picture %d decoded as %d %v, err %v", i, seq, at, err)
		}
	}
}

func TestContentMoves(t *testing.T) {
	for _, sz := range testSizes() {
		s := newSource(t, sz.w, sz.h)
		band := barcodeLayout(sz.w).bandHeight()
		a := s.Draw(10, time.UnixMilli(0))
		b := s.Draw(11, time.UnixMilli(0))
		for p, name := range []string{"Y", "U", "V"} {
			start := band * a.Strides[p]
			if p > 0 {
				start /= 2
			}
			if bytes.Equal(a.Planes[p][start:], b.Planes[p][start:]) {
				t.Errorf("%dx%d: plane %s below the band is the same in consecutive frames", sz.w, sz.h, name)
			}
		}
		// The bars cover the picture's width, and the box is on top of them somewhere.
		if n := distinct(a.Planes[0][band*sz.w : (band+1)*sz.w]); n < 8 {
			t.Errorf("%dx%d: first content row has %d distinct luma values, want the 8 bars", sz.w, sz.h, n)
		}
	}
}

func distinct(b []byte) int {
	var seen [256]bool
	n := 0
	for _, v := range b {
		if !seen[v] {
			seen[v] = true
			n++
		}
	}
	return n
}

// Draw depends only on its arguments, so the same frame drawn by two sources is identical.
func TestDrawDeterministic(t *testing.T) {
	a, b := newSource(t, 640, 480), newSource(t, 640, 480)
	b.Draw(3, time.Time{}) // different ring position
	for seq := uint64(0); seq < 300; seq += 37 {
		fa, fb := a.Draw(seq, time.UnixMilli(int64(seq))), b.Draw(seq, time.UnixMilli(int64(seq)))
		for p := range 3 {
			if !bytes.Equal(fa.Planes[p], fb.Planes[p]) {
				t.Fatalf("seq %d plane %d differs", seq, p)
			}
		}
	}
}

func TestDrawAllocs(t *testing.T) {
	s := newSource(t, 1280, 720)
	seq := uint64(0)
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { s.Draw(seq, now); seq++ }); n != 0 {
		t.Errorf("Draw allocates %v times per frame, want 0", n)
	}
}

func BenchmarkDraw(b *testing.B) {
	s := newSource(b, 1280, 720)
	now := time.Now()
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		s.Draw(seq, now)
		seq++
	}
}

func BenchmarkDecode(b *testing.B) {
	s := newSource(b, 1280, 720)
	f := s.Draw(1, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode(f.Planes[0], f.Strides[0], f.Width, f.Height); err != nil {
			b.Fatal(err)
		}
	}
}

type runFrame struct {
	seq        uint64
	at         time.Time
	decodedSeq uint64
}

// runFrames runs s until emit has seen n frames (calling slow for each first) and returns the
// frames and how long Run took to return after the cancel. The timing checks in the tests are
// one-sided (never faster than the schedule), because a loaded machine makes everything late.
func runFrames(t *testing.T, s *Source, n int, slow func(seq uint64)) ([]runFrame, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []runFrame
	var cancelled time.Time
	err := s.Run(ctx, func(f *media.Frame) {
		seq, _, err := Decode(f.Planes[0], f.Strides[0], f.Width, f.Height)
		if err != nil {
			t.Errorf("frame %d: %v", f.Seq, err)
		}
		got = append(got, runFrame{f.Seq, f.CaptureTime, seq})
		if slow != nil {
			slow(f.Seq)
		}
		if len(got) == n {
			cancelled = time.Now()
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if len(got) != n {
		t.Fatalf("Run returned after %d frames, want %d", len(got), n)
	}
	return got, time.Since(cancelled)
}

// checkFrames checks consecutive Seq from 0, matching barcodes, and capture times at least
// minGap apart.
func checkFrames(t *testing.T, got []runFrame, minGap time.Duration) {
	t.Helper()
	for i, f := range got {
		if f.seq != uint64(i) || f.decodedSeq != f.seq {
			t.Errorf("frame %d: Seq %d, barcode %d", i, f.seq, f.decodedSeq)
		}
		if i > 0 {
			if gap := f.at.Sub(got[i-1].at); gap < minGap {
				t.Errorf("frame %d: captured %v after frame %d, want at least %v", i, gap, i-1, minGap)
			}
		}
	}
}

func TestRun(t *testing.T) {
	const fps = 50
	interval := time.Second / fps
	s, err := New(Config{Width: 320, Height: 240, FPS: fps})
	if err != nil {
		t.Fatal(err)
	}
	got, stop := runFrames(t, s, 15, nil) // about 300ms
	checkFrames(t, got, interval/2)
	// Frame k goes out no earlier than k intervals after frame 0.
	if d := got[14].at.Sub(got[0].at); d < 14*interval-time.Millisecond {
		t.Errorf("15 frames in %v at %d fps: not paced", d, fps)
	}
	if stop > 100*time.Millisecond {
		t.Errorf("Run returned %v after cancel", stop)
	}
}

func TestRunStopsPromptly(t *testing.T) {
	s, err := New(Config{Width: 320, Height: 240, FPS: 1}) // a second between frames
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	frames := make(chan struct{}, 10)
	done := make(chan error)
	go func() { done <- s.Run(ctx, func(*media.Frame) { frames <- struct{}{} }) }()
	<-frames // the first frame comes at once
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(500 * time.Millisecond): // waiting for the next tick would take 1s
		t.Fatal("Run did not return within 500ms of cancel")
	}
	if len(frames) != 0 {
		t.Errorf("%d frames after cancel", len(frames))
	}
}

func TestRunCancelledBeforeStart(t *testing.T) {
	s := newSource(t, 320, 240)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := 0
	if err := s.Run(ctx, func(*media.Frame) { n++ }); err != nil || n != 0 {
		t.Errorf("Run = %v with %d frames, want nil and none", err, n)
	}
}

// A slow consumer makes Run skip ticks instead of catching up with a burst of frames.
func TestRunSkipsTicks(t *testing.T) {
	const fps = 50
	interval := time.Second / fps
	s, err := New(Config{Width: 320, Height: 240, FPS: fps})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := runFrames(t, s, 8, func(seq uint64) {
		if seq == 2 {
			time.Sleep(5 * interval)
		}
	})
	// Catching up would send frames 3 to 7 back to back after the stall.
	checkFrames(t, got, interval/2)
	if d := got[3].at.Sub(got[2].at); d < 5*interval {
		t.Errorf("frame 3 captured %v after frame 2, which took %v to emit", d, 5*interval)
	}
}

// FuzzDecode passes the fuzzer's sizes straight through: Decode must validate them itself, and
// its work is bounded by the barcode's 104 blocks whatever the picture size.
func FuzzDecode(f *testing.F) {
	s, err := New(Config{Width: 160, Height: 120, FPS: 1})
	if err != nil {
		f.Fatal(err)
	}
	// Only the barcode rows of a real frame: small inputs keep the fuzzer (and its minimizer) fast.
	rows := barcodeLayout(160).rows * barcodeLayout(160).block
	frame := s.Draw(77, time.UnixMilli(1_700_000_000_000))
	f.Add(frame.Planes[0][:160*rows], 160, rows, 160)
	f.Add([]byte{}, 0, 0, 0)
	f.Add(bytes.Repeat([]byte{235}, 64*8), 64, 8, 64)
	f.Fuzz(func(t *testing.T, y []byte, width, height, stride int) {
		seq, at, err := Decode(y, stride, width, height)
		if err != nil {
			if !at.IsZero() || seq != 0 {
				t.Fatalf("error %v with values %d %v", err, seq, at)
			}
			return
		}
		if stride < width || width <= 0 || height <= 0 || len(y)/stride < height {
			t.Fatalf("accepted %d bytes as %dx%d stride %d", len(y), width, height, stride)
		}
		if seq >= 1<<32 || at.UnixMilli() < 0 || at.UnixMilli() >= 1<<48 {
			t.Fatalf("out of range: seq %d time %v", seq, at)
		}
	})
}
