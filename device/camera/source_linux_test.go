package camera

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/pipeline"
)

// fakeOpens hands out, one per open, a camera on a scripted stream or an error.
type fakeOpens struct {
	t       *testing.T
	mu      sync.Mutex
	opens   []func() (*Camera, error)
	streams []*fakeStream
	calls   int
}

func (f *fakeOpens) open(Config, *slog.Logger) (*Camera, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls >= len(f.opens) {
		return nil, syscall.ENOENT
	}
	f.calls++
	return f.opens[f.calls-1]()
}

// camera adds an open that succeeds with a 4x2 YUYV camera streaming script.
func (f *fakeOpens) camera(script ...step) *fakeStream {
	fs := newFakeStream(4, 24, script...)
	f.streams = append(f.streams, fs)
	f.opens = append(f.opens, func() (*Camera, error) { return newTestCamera(f.t, fs), nil })
	return fs
}

func (f *fakeOpens) fail(err error) {
	f.opens = append(f.opens, func() (*Camera, error) { return nil, err })
}

func newTestSource(t *testing.T, log *slog.Logger) (*Source, *fakeOpens) {
	f := &fakeOpens{t: t}
	s := NewSource(Config{Device: "/dev/video7", Format: "auto", Width: 4, Height: 2, FPS: 30}, log)
	s.open = f.open
	return s, f
}

func TestSourceReopensEveryRun(t *testing.T) {
	var logs bytes.Buffer
	s, f := newTestSource(t, slog.New(slog.NewTextHandler(&logs, nil)))
	first := f.camera(step{index: 0, used: 24}, step{index: 1, used: 24}, step{index: 2, deqErr: syscall.ENODEV})
	f.fail(syscall.ENODEV) // not back yet
	second := f.camera(step{index: 0, used: 24, seq: 7}, step{index: 1, used: 24, seq: 9}, step{index: 2, used: 4})

	var seqs []uint64
	emit := func(fr *media.Frame) { seqs = append(seqs, fr.Seq) }
	if err := s.Run(context.Background(), emit); !errors.Is(err, ErrNoDevice) || !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("first Run: %v, want ENODEV", err)
	}
	if first.closed != 1 || first.stopped != 1 {
		t.Errorf("first camera: stopped %d, closed %d", first.stopped, first.closed)
	}
	if err := s.Run(context.Background(), emit); !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("second Run: %v, want the open error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for s.Stats().ShortBuffers == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if err := s.Run(ctx, emit); err != nil {
		t.Fatalf("third Run: %v", err)
	}
	if second.closed != 1 {
		t.Errorf("second camera closed %d times", second.closed)
	}
	// Seq goes on across opens, with the driver's gap (7 to 9) kept.
	if want := []uint64{0, 1, 2, 4}; !slices.Equal(seqs, want) {
		t.Errorf("Seq %v, want %v", seqs, want)
	}
	if st := s.Stats(); st != (Stats{Frames: 4, ShortBuffers: 1, Dropped: 1}) {
		t.Errorf("stats %+v", st)
	}
	if n := strings.Count(logs.String(), "camera capturing again"); n != 1 {
		t.Errorf("logged the recovery %d times:\n%s", n, logs.String())
	}
}

func TestSourceModeChanged(t *testing.T) {
	tests := []struct {
		name  string
		probe bool // Probe succeeds (else it fails and Config's size is pinned)
		cfgW  int
	}{
		{"probed size", true, 4},
		{"config size when the probe fails", false, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, f := newTestSource(t, nil)
			s.cfg.Width = tt.cfgW
			if tt.probe {
				f.camera()
			} else {
				f.fail(syscall.ENOENT)
			}
			other := newFakeStream(2, 24)
			f.opens = append(f.opens, func() (*Camera, error) {
				c := newTestCamera(t, other)
				c.mode.Width = 16
				return c, nil
			})
			m, err := s.Probe()
			if tt.probe && (err != nil || m.Width != 4) || !tt.probe && err == nil {
				t.Fatalf("Probe: %+v %v", m, err)
			}
			if tt.probe && f.streams[0].closed != 1 {
				t.Error("Probe left the device open")
			}
			err = s.Run(context.Background(), func(*media.Frame) {})
			if !errors.Is(err, ErrModeChanged) || !strings.Contains(err.Error(), "16x2") {
				t.Errorf("Run: %v, want ErrModeChanged naming 16x2", err)
			}
			if other.closed != 1 || other.started != 0 {
				t.Errorf("the other camera: started %d, closed %d", other.started, other.closed)
			}
		})
	}
}

func TestSourceRefusesOverlappingRuns(t *testing.T) {
	s, f := newTestSource(t, nil)
	fs := f.camera() // no frames: runs until cancelled
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx, func(*media.Frame) {}) }()
	for {
		fs.mu.Lock()
		started := fs.started
		fs.mu.Unlock()
		if started == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Run(context.Background(), func(*media.Frame) {}); !errors.Is(err, ErrRunning) {
		t.Errorf("overlapping Run: %v, want ErrRunning", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// frameLog is an encoder and sink for pipeline tests: it notes every frame it is given.
type frameLog struct {
	mu     sync.Mutex
	frames []seenFrame
	// check, when set, looks at each frame while it is valid (inside emit) and says what is
	// wrong with it.
	check func(f *media.Frame) string
}

type seenFrame struct {
	seq      uint64
	captured time.Time
	received time.Time
	problem  string
}

func (l *frameLog) Encode(f *media.Frame) (media.AccessUnit, error) {
	received := time.Now()
	var problem string
	if l.check != nil {
		problem = l.check(f)
	}
	l.mu.Lock()
	l.frames = append(l.frames, seenFrame{seq: f.Seq, captured: f.CaptureTime, received: received, problem: problem})
	l.mu.Unlock()
	return media.AccessUnit{Data: []byte{0}, FrameSeq: f.Seq, CaptureTime: f.CaptureTime}, nil
}

func (l *frameLog) RequestKeyframe()                 {}
func (l *frameLog) SetBitrate(int) error             { return nil }
func (l *frameLog) Name() string                     { return "frame log" }
func (l *frameLog) Close() error                     { return nil }
func (l *frameLog) WriteAccessUnit(media.AccessUnit) {}

func (l *frameLog) seen() []seenFrame {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.frames)
}

// waitFrames waits until n frames arrived after the first `after` ones, and returns them all.
func (l *frameLog) waitFrames(t *testing.T, after, n int, timeout time.Duration) []seenFrame {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := l.seen()
		if len(got) >= after+n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d frames after %s, want %d", len(got)-after, timeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runPipeline runs src in the real pipeline with l as encoder and sink, until the test ends.
func runPipeline(t *testing.T, src pipeline.Source, l *frameLog, retryMin time.Duration, log *slog.Logger) *pipeline.Pipeline {
	t.Helper()
	p := pipeline.New(pipeline.Config{Source: src, Encoder: l, Sink: l, Log: log, RetryMin: retryMin, RetryMax: 10 * retryMin})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// TestSourceInPipeline: the pipeline's retry reopens the device after it went away, and
// frames resume with Seq counting on.
func TestSourceInPipeline(t *testing.T) {
	s, f := newTestSource(t, nil)
	f.camera(step{index: 0, used: 24}, step{index: 1, used: 24}, step{waitErr: syscall.ENODEV})
	f.fail(syscall.ENODEV)
	var script []step
	for i := range 50 {
		script = append(script, step{index: uint32(i % 4), used: 24})
	}
	f.camera(script...)
	l := &frameLog{}
	p := runPipeline(t, s, l, 10*time.Millisecond, nil)
	got := l.waitFrames(t, 0, 52, 5*time.Second)
	for i, fr := range got[:52] {
		if fr.seq != uint64(i) {
			t.Fatalf("frame %d has Seq %d", i, fr.seq)
		}
	}
	if st := p.Status(); st.Err != nil || f.calls != 3 {
		t.Errorf("status %+v after %d opens", st, f.calls)
	}
}
