package camera

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
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
	on64 := func(v64, v32 uintptr) uintptr { return map[uintptr]uintptr{8: v64, 4: v32}[ptr] }
	sizes := []struct {
		name      string
		got, want uintptr
	}{
		{"v4l2_format", unsafe.Sizeof(v4l2Format{}), 200 + ptr},
		{"v4l2_format.fmt offset", unsafe.Offsetof(v4l2Format{}.pix), ptr},
		{"v4l2_frmsizeenum", unsafe.Sizeof(v4l2FrmSizeEnum{}), 44},
		{"v4l2_streamparm", unsafe.Sizeof(v4l2StreamParm{}), 204},
		{"v4l2_streamparm.timeperframe offset", unsafe.Offsetof(v4l2StreamParm{}.timePerFrame), 12},
		{"v4l2_requestbuffers", unsafe.Sizeof(v4l2RequestBuffers{}), 20},
		{"v4l2_exportbuffer", unsafe.Sizeof(v4l2ExportBuffer{}), 64},
		{"v4l2_exportbuffer.fd offset", unsafe.Offsetof(v4l2ExportBuffer{}.fd), 16},
		{"v4l2_buffer", unsafe.Sizeof(v4l2Buffer{}), on64(88, 68)},
		{"v4l2_buffer.timestamp offset", unsafe.Offsetof(v4l2Buffer{}.timestamp), on64(24, 20)},
		{"v4l2_buffer.sequence offset", unsafe.Offsetof(v4l2Buffer{}.sequence), on64(56, 44)},
		{"v4l2_buffer.m offset", unsafe.Offsetof(v4l2Buffer{}.m), on64(64, 52)},
		{"v4l2_buffer.length offset", unsafe.Offsetof(v4l2Buffer{}.length), on64(72, 56)},
		{"v4l2_buffer.request_fd offset", unsafe.Offsetof(v4l2Buffer{}.requestFD), on64(80, 64)},
	}
	for _, s := range sizes {
		if s.got != s.want {
			t.Errorf("%s is %d bytes, want %d", s.name, s.got, s.want)
		}
	}
	codes := []struct {
		name      string
		got, want uintptr
	}{
		{"ENUM_FRAMESIZES", vidiocEnumFrameSizes, 0xc02c564a},
		{"G_FMT", vidiocGFmt, on64(0xc0d05604, 0xc0cc5604)},
		{"S_FMT", vidiocSFmt, on64(0xc0d05605, 0xc0cc5605)},
		{"REQBUFS", vidiocReqBufs, 0xc0145608},
		{"QUERYBUF", vidiocQueryBuf, on64(0xc0585609, 0xc0445609)},
		{"QBUF", vidiocQBuf, on64(0xc058560f, 0xc044560f)},
		{"EXPBUF", vidiocExpBuf, 0xc0405610},
		{"DQBUF", vidiocDQBuf, on64(0xc0585611, 0xc0445611)},
		{"STREAMON", vidiocStreamOn, 0x40045612},
		{"STREAMOFF", vidiocStreamOff, 0x40045613},
		{"G_PARM", vidiocGParm, 0xc0cc5615},
		{"S_PARM", vidiocSParm, 0xc0cc5616},
	}
	for _, c := range codes {
		if c.got != c.want {
			t.Errorf("VIDIOC_%s is %#x, want %#x", c.name, c.got, c.want)
		}
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
	seq     uint32 // the driver's sequence number
	failed  bool   // V4L2_BUF_FLAG_ERROR
	untimed bool   // no usable timestamp
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
	// stoppedAtClose is stopped as it was when close was called.
	stoppedAtClose int
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
	return dequeued{data: s.bufs[st.index][:st.used], index: st.index, at: s.at, seq: st.seq, failed: st.failed, untimed: st.untimed,
		dmabuf: &media.DMABuf{FD: 100 + int(st.index), Length: len(s.bufs[st.index])}}, nil
}

func (s *fakeStream) interrupt() {}

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

func (s *fakeStream) stop() error { s.mu.Lock(); s.stopped++; s.mu.Unlock(); return nil }
func (s *fakeStream) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed++
	s.stoppedAtClose = s.stopped
	return nil
}

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
	dmabuf  int  // the exported descriptor the frame carries
}

func TestRunFrames(t *testing.T) {
	fs := newFakeStream(4, 32,
		step{index: 0, used: 24},
		step{timeout: true},
		step{index: 1, used: 32}, // bytesused above the need is fine
		step{index: 2, used: 10}, // short: skipped, but numbered
		step{index: 3, deqErr: syscall.EAGAIN},
		step{index: 3, used: 24, untimed: true},
		step{index: 0, used: 24},
	)
	c := newTestCamera(t, fs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []emitted
	err := c.Run(ctx, func(f *media.Frame) {
		idx := f.Planes[0][0]
		got = append(got, emitted{f.Seq, idx, f.Strides[0], len(f.Planes[0]), f.CaptureTime, !fs.isQueued(int(idx)), f.DMABuf.FD})
		if len(got) == 4 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []emitted{
		{0, 0, 12, 24, fs.at, true, 100},
		{1, 1, 12, 24, fs.at, true, 101},
		{3, 3, 12, 24, fs.at, true, 103},
		{4, 0, 12, 24, fs.at, true, 100},
	}
	if !slices.Equal(got, want) {
		t.Errorf("emitted\n%+v\nwant\n%+v", got, want)
	}
	if !slices.Equal(fs.requeued, []uint32{0, 1, 2, 3, 0}) {
		t.Errorf("requeued %v", fs.requeued)
	}
	if st := c.Stats(); st != (Stats{Frames: 4, ShortBuffers: 1, Untimed: 1}) {
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
			name:     "unplugged: matches ErrNoDevice too",
			fs:       newFakeStream(2, 24, step{index: 0, deqErr: syscall.ENODEV}),
			is:       ErrNoDevice,
			contains: "unplugged?",
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

func TestRunSkipsFailedBuffers(t *testing.T) {
	fs := newFakeStream(3, 24,
		step{index: 0, used: 24, seq: 10},
		step{index: 1, used: 24, seq: 11, failed: true}, // skipped, numbered, requeued
		step{index: 2, used: 24, seq: 12, failed: true},
		step{index: 0, used: 24, seq: 13},
		step{index: 1, used: 24, seq: 16}, // the driver dropped 14 and 15
		step{index: 2, used: 24, seq: 16}, // a driver that repeats itself: one on
		step{index: 0, used: 24, seq: 2},  // restarted counting: one on
	)
	c := newTestCamera(t, fs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seqs []uint64
	if err := c.Run(ctx, func(f *media.Frame) {
		seqs = append(seqs, f.Seq)
		if len(seqs) == 5 {
			cancel()
		}
	}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := []uint64{0, 3, 6, 7, 8}; !slices.Equal(seqs, want) {
		t.Errorf("Seq %v, want %v", seqs, want)
	}
	if !slices.Equal(fs.requeued, []uint32{0, 1, 2, 0, 1, 2, 0}) {
		t.Errorf("requeued %v, want every buffer", fs.requeued)
	}
	if st := c.Stats(); st != (Stats{Frames: 5, ErrorBuffers: 2, Dropped: 2}) {
		t.Errorf("stats %+v", st)
	}
}

func TestRunGivesUpOnBadBuffers(t *testing.T) {
	bad := func(n int, short bool) []step {
		var s []step
		for i := range n {
			st := step{index: uint32(i % 2), used: 24, failed: !short}
			if short {
				st.used = 4
			}
			s = append(s, st)
		}
		return s
	}
	tests := []struct {
		name   string
		script []step
		frames uint64
	}{
		{"failed buffers", bad(maxBadBuffers, false), 0},
		{"short buffers", bad(maxBadBuffers, true), 0},
		{"a good frame starts the count again",
			slices.Concat(bad(maxBadBuffers-1, false), []step{{index: 1, used: 24}}, bad(maxBadBuffers, false)), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeStream(2, 24, tt.script...)
			c := newTestCamera(t, fs)
			err := c.Run(context.Background(), func(*media.Frame) {})
			if !errors.Is(err, ErrBadBuffers) || !strings.Contains(err.Error(), "/dev/video7") {
				t.Fatalf("got %v, want ErrBadBuffers naming the device", err)
			}
			if len(fs.script) != 0 {
				t.Errorf("gave up %d buffers early", len(fs.script))
			}
			if st := c.Stats(); st.Frames != tt.frames || fs.stopped != 1 {
				t.Errorf("stats %+v, stopped %d", st, fs.stopped)
			}
		})
	}
}

func TestSeqStep(t *testing.T) {
	tests := []struct {
		prev, next uint32
		want       uint64
	}{
		{5, 6, 1},
		{5, 9, 4},
		{0, 0, 1},                   // a driver that does not count
		{9, 3, 1},                   // restarted
		{math.MaxUint32, 0, 1},      // wrapped: one on
		{math.MaxUint32 - 1, 1, 3},  // wrapped over drops
		{0, maxSeqStep + 1, 1},      // not a believable drop
		{0, maxSeqStep, maxSeqStep}, // a long one, still
	}
	for _, tt := range tests {
		if got := seqStep(tt.prev, tt.next); got != tt.want {
			t.Errorf("seqStep(%d, %d) = %d, want %d", tt.prev, tt.next, got, tt.want)
		}
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
	// Close closed the device only after Run had stopped streaming.
	if fs.stoppedAtClose != 1 || fs.closed != 1 {
		t.Errorf("stopped %d times when the device was closed, closed %d", fs.stoppedAtClose, fs.closed)
	}
	select {
	case err := <-running:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Run still running after Close")
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
func (s *loopStream) interrupt()           {}
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
