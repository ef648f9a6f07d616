package camera

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/edgeflux/edge/internal/media"
)

func TestDiscover(t *testing.T) {
	nodes, _ := filepath.Glob("/dev/video*")
	got := Discover()
	if len(nodes) == 0 && len(got) != 0 {
		t.Fatalf("no /dev/video* here, yet Discover returned %v", got)
	}
	for _, p := range got {
		if !slices.Contains(nodes, p) {
			t.Errorf("Discover returned %q, not a /dev/video* node", p)
		}
	}
}

func TestDiscoverSkipsNonV4L2(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"video0", "video1", "video10"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("not a device"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "video2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := discover(filepath.Join(dir, "video*")); len(got) != 0 {
		t.Errorf("got %v, want none", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "video9")
	regular := filepath.Join(dir, "video3")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := Config{Format: "auto", Width: 1280, Height: 720, FPS: 30}
	with := func(dev string) Config { c := good; c.Device = dev; return c }

	tests := []struct {
		name    string
		cfg     Config
		is      []error
		mention string
	}{
		{"missing device", with(missing), []error{ErrNoDevice, fs.ErrNotExist}, missing},
		{"not a V4L2 device", with(regular), []error{ErrNotCapture, syscall.ENOTTY}, regular},
		{"invalid format", Config{Device: missing, Format: "rgb", Width: 1280, Height: 720, FPS: 30},
			[]error{ErrInvalidConfig}, missing},
		{"invalid size", Config{Device: missing, Format: "auto", FPS: 30}, []error{ErrInvalidConfig}, "0x0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Open(tt.cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("error %q does not match %v", err, target)
				}
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestOpenAutoWithoutDevices(t *testing.T) {
	if nodes, _ := filepath.Glob("/dev/video*"); len(nodes) > 0 {
		t.Skip("this machine has /dev/video* nodes")
	}
	_, err := Open(Config{Device: "auto", Format: "auto", Width: 1280, Height: 720, FPS: 30}, nil)
	if !errors.Is(err, ErrNoDevice) {
		t.Errorf("got %v, want ErrNoDevice", err)
	}
}

func TestV4L2ABI(t *testing.T) {
	ptr := unsafe.Sizeof(uintptr(0))
	if got := unsafe.Sizeof(v4l2Capability{}); got != 104 {
		t.Errorf("v4l2_capability is %d bytes, want 104", got)
	}
	if got := unsafe.Sizeof(v4l2Format{}); got != 200+ptr {
		t.Errorf("v4l2_format is %d bytes, want %d", got, 200+ptr)
	}
	if got := unsafe.Offsetof(v4l2Format{}.pix); got != ptr {
		t.Errorf("v4l2_format.fmt at offset %d, want %d", got, ptr)
	}
	if got := unsafe.Sizeof(v4l2FrmSizeEnum{}); got != 44 {
		t.Errorf("v4l2_frmsizeenum is %d bytes, want 44", got)
	}
	if vidiocQueryCap != 0x80685600 || vidiocEnumFrameSizes != 0xc02c564a {
		t.Errorf("QUERYCAP %#x ENUM_FRAMESIZES %#x", vidiocQueryCap, vidiocEnumFrameSizes)
	}
	if want := map[uintptr]uintptr{8: 0xc0d05604, 4: 0xc0cc5604}[ptr]; vidiocGFmt != want {
		t.Errorf("G_FMT %#x, want %#x", vidiocGFmt, want)
	}
}

// step is one scripted answer of fakeStream: a wait that times out or fails, or a ready
// buffer (index, bytesused) whose dequeue may fail.
type step struct {
	timeout bool
	waitErr error
	deqErr  error
	index   uint32
	used    int
}

type fakeStream struct {
	mu       sync.Mutex
	bufs     [][]byte
	script   []step
	pending  *step
	queued   []bool
	startErr error
	at       time.Time
	started  int
	stopped  int
	closed   int
	requeued []uint32
}

func newFakeStream(n, size int, script ...step) *fakeStream {
	s := &fakeStream{script: script, queued: make([]bool, n), at: time.Unix(1700000000, 0)}
	for i := range n {
		b := make([]byte, size)
		b[0] = byte(i)
		s.bufs = append(s.bufs, b)
		s.queued[i] = true
	}
	return s
}

func (s *fakeStream) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started++
	return s.startErr
}

func (s *fakeStream) wait() (bool, error) {
	s.mu.Lock()
	if len(s.script) == 0 {
		s.mu.Unlock()
		time.Sleep(time.Millisecond) // like a camera with no frame this second
		return false, nil
	}
	st := s.script[0]
	s.script = s.script[1:]
	s.mu.Unlock()
	switch {
	case st.timeout:
		return false, nil
	case st.waitErr != nil:
		return false, st.waitErr
	}
	s.pending = &st
	return true, nil
}

func (s *fakeStream) dequeue() (dequeued, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.pending
	s.pending = nil
	if st.deqErr != nil {
		return dequeued{}, st.deqErr
	}
	if !s.queued[st.index] {
		panic(fmt.Sprintf("buffer %d dequeued twice", st.index))
	}
	s.queued[st.index] = false
	return dequeued{data: s.bufs[st.index][:st.used], index: st.index, at: s.at}, nil
}

func (s *fakeStream) requeue(index uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[index] {
		return fmt.Errorf("buffer %d requeued twice", index)
	}
	s.queued[index] = true
	s.requeued = append(s.requeued, index)
	return nil
}

func (s *fakeStream) isQueued(index int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued[index]
}

func (s *fakeStream) stop() error  { s.mu.Lock(); s.stopped++; s.mu.Unlock(); return nil }
func (s *fakeStream) close() error { s.mu.Lock(); s.closed++; s.mu.Unlock(); return nil }

// YUYV 4x2 with a stride of 12: 24 bytes a frame.
func newTestCamera(t *testing.T, s stream) *Camera {
	t.Helper()
	l, err := newLayout(media.PixelFormatYUYV, 4, 2, 12)
	if err != nil {
		t.Fatal(err)
	}
	return &Camera{
		log:        slog.New(slog.DiscardHandler),
		device:     "/dev/video7",
		mode:       Mode{Format: media.PixelFormatYUYV, Width: 4, Height: 2, FPS: 30},
		layout:     l,
		stream:     s,
		stallAfter: time.Minute,
	}
}

type emitted struct {
	seq     uint64
	buf     byte // first byte of the plane: the buffer index
	stride  int
	length  int
	at      time.Time
	wasHeld bool // the buffer was not queued while emit ran
}

func TestRunFrames(t *testing.T) {
	fs := newFakeStream(4, 32,
		step{index: 0, used: 24},
		step{timeout: true},
		step{index: 1, used: 32}, // bytesused above the need is fine
		step{index: 2, used: 10}, // short: skipped, but numbered
		step{index: 3, deqErr: syscall.EAGAIN},
		step{index: 3, used: 24},
		step{index: 0, used: 24},
	)
	c := newTestCamera(t, fs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []emitted
	err := c.Run(ctx, func(f *media.Frame) {
		idx := f.Planes[0][0]
		got = append(got, emitted{f.Seq, idx, f.Strides[0], len(f.Planes[0]), f.CaptureTime, !fs.isQueued(int(idx))})
		if len(got) == 4 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []emitted{
		{0, 0, 12, 24, fs.at, true},
		{1, 1, 12, 24, fs.at, true},
		{3, 3, 12, 24, fs.at, true},
		{4, 0, 12, 24, fs.at, true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("emitted\n%+v\nwant\n%+v", got, want)
	}
	if !slices.Equal(fs.requeued, []uint32{0, 1, 2, 3, 0}) {
		t.Errorf("requeued %v", fs.requeued)
	}
	if st := c.Stats(); st != (Stats{Frames: 4, ShortBuffers: 1}) {
		t.Errorf("stats %+v", st)
	}
	if fs.started != 1 || fs.stopped != 1 {
		t.Errorf("started %d stopped %d times", fs.started, fs.stopped)
	}

	// Run again restarts streaming, and Seq goes on.
	fs.script = []step{{index: 1, used: 24}}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	var seq uint64
	if err := c.Run(ctx2, func(f *media.Frame) { seq = f.Seq; cancel2() }); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if seq != 5 || fs.started != 2 || fs.stopped != 2 {
		t.Errorf("second run: seq %d, started %d, stopped %d", seq, fs.started, fs.stopped)
	}
}

func TestRunFailures(t *testing.T) {
	tests := []struct {
		name     string
		fs       *fakeStream
		stall    time.Duration
		is       error
		contains string
	}{
		{
			name:     "unplugged while dequeuing",
			fs:       newFakeStream(2, 24, step{index: 0, used: 24}, step{index: 1, deqErr: syscall.ENODEV}),
			is:       syscall.ENODEV,
			contains: "camera: dequeue buffer on /dev/video7",
		},
		{
			name:     "poll fails",
			fs:       newFakeStream(2, 24, step{waitErr: syscall.EIO}),
			is:       syscall.EIO,
			contains: "camera: wait for frame on /dev/video7",
		},
		{
			name:     "start fails",
			fs:       func() *fakeStream { s := newFakeStream(2, 24); s.startErr = syscall.EBUSY; return s }(),
			is:       syscall.EBUSY,
			contains: "camera: start streaming /dev/video7",
		},
		{
			name:     "no frames for too long",
			fs:       newFakeStream(2, 24, step{index: 0, used: 24}),
			stall:    20 * time.Millisecond,
			is:       ErrStalled,
			contains: "/dev/video7",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCamera(t, tt.fs)
			if tt.stall > 0 {
				c.stallAfter = tt.stall
			}
			err := c.Run(context.Background(), func(*media.Frame) {})
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("got %v, want %v mentioning %q", err, tt.is, tt.contains)
			}
			if tt.fs.stopped != tt.fs.started-boolInt(tt.fs.startErr != nil) {
				t.Errorf("started %d, stopped %d", tt.fs.started, tt.fs.stopped)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestRunAndClose(t *testing.T) {
	fs := newFakeStream(2, 24) // no frames: Run waits until stopped
	c := newTestCamera(t, fs)
	running := make(chan error, 1)
	go func() { running <- c.Run(context.Background(), func(*media.Frame) {}) }()

	// Wait for the Run to be in progress, then check a second one is refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		fs.mu.Lock()
		started := fs.started
		fs.mu.Unlock()
		if started == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.Run(context.Background(), func(*media.Frame) {}); !errors.Is(err, ErrRunning) {
		t.Errorf("concurrent Run: got %v, want ErrRunning", err)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close returned only after Run stopped streaming, and before closing the device.
	select {
	case err := <-running:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	default:
		t.Error("Close returned while Run was still running")
	}
	if fs.stopped != 1 || fs.closed != 1 {
		t.Errorf("stopped %d, closed %d", fs.stopped, fs.closed)
	}
	if err := c.Close(); err != nil || fs.closed != 1 {
		t.Errorf("second Close: %v, closed %d times", err, fs.closed)
	}
	if err := c.Run(context.Background(), func(*media.Frame) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: got %v, want ErrClosed", err)
	}
}

func TestRunNilEmit(t *testing.T) {
	c := newTestCamera(t, newFakeStream(1, 24))
	if err := c.Run(context.Background(), nil); err == nil {
		t.Error("Run with nil emit succeeded")
	}
}

// loopStream hands out its buffers in turn, always ready.
type loopStream struct {
	bufs [][]byte
	next uint32
}

func (s *loopStream) start() error        { return nil }
func (s *loopStream) wait() (bool, error) { return true, nil }
func (s *loopStream) dequeue() (dequeued, error) {
	i := s.next
	s.next = (s.next + 1) % uint32(len(s.bufs))
	return dequeued{data: s.bufs[i], index: i, at: time.Now()}, nil
}
func (s *loopStream) requeue(uint32) error { return nil }
func (s *loopStream) stop() error          { return nil }
func (s *loopStream) close() error         { return nil }

// BenchmarkCapture is Run's cost per frame at 1280x720 YUYV, without the kernel.
func BenchmarkCapture(b *testing.B) {
	l, err := newLayout(media.PixelFormatYUYV, 1280, 720, 2560)
	if err != nil {
		b.Fatal(err)
	}
	s := &loopStream{}
	for range bufferCount {
		s.bufs = append(s.bufs, make([]byte, l.size))
	}
	c := &Camera{log: slog.New(slog.DiscardHandler), device: "/dev/video7", layout: l, stream: s, stallAfter: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	if err := c.Run(ctx, func(*media.Frame) {
		if n++; n == b.N {
			cancel()
		}
	}); err != nil {
		b.Fatal(err)
	}
}
