package camera

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/internal/media"
)

// fakeDriver is a V4L2 capture driver behind sysCalls: it keeps the buffer queue the way
// videobuf2 does, completes a queued buffer whenever it is polled, and checks that every
// mapping and exported descriptor is given back.
type fakeDriver struct {
	t *testing.T

	mu        sync.Mutex
	fd        int
	size      int // bytes per buffer
	bufs      [][]byte
	queued    []uint32
	done      []v4l2Buffer
	streaming bool
	mapped    map[int]bool // by buffer index
	exported  map[int]bool // open descriptors
	nextFD    int
	devClosed bool
	calls     []string
	seq       uint32
	stamp     int64 // of the last completed buffer, in microseconds of CLOCK_MONOTONIC

	// Behaviour, set by tests.
	noExport   bool             // VIDIOC_EXPBUF is not supported
	fail       map[string]error // by request name
	gone       bool             // unplugged: poll says POLLERR|POLLHUP, ioctls ENODEV
	queueError bool             // poll says POLLERR, DQBUF finds nothing (vb2_queue_error)
	paused     bool             // no buffer completes
	fill       func(b *v4l2Buffer)
}

const fakeOffsetStep = 1 << 16 // mmap offset of buffer i is i*fakeOffsetStep

func newFakeDriver(t *testing.T, size int) *fakeDriver {
	return &fakeDriver{t: t, fd: 1000, size: size, mapped: map[int]bool{}, exported: map[int]bool{}, nextFD: 2000,
		fail: map[string]error{}}
}

var requestNames = map[uintptr]string{
	vidiocReqBufs: "REQBUFS", vidiocQueryBuf: "QUERYBUF", vidiocExpBuf: "EXPBUF", vidiocQBuf: "QBUF",
	vidiocDQBuf: "DQBUF", vidiocStreamOn: "STREAMON", vidiocStreamOff: "STREAMOFF",
}

func (d *fakeDriver) ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := requestNames[req]
	if fd != d.fd || d.devClosed {
		return unix.EBADF
	}
	d.calls = append(d.calls, name)
	if d.gone {
		return unix.ENODEV
	}
	if err := d.fail[name]; err != nil {
		return err
	}
	switch req {
	case vidiocReqBufs:
		r := (*v4l2RequestBuffers)(arg)
		if r.typ != bufTypeVideoCapture || r.memory != memoryMMAP {
			return unix.EINVAL
		}
		d.streaming, d.queued, d.done = false, nil, nil
		d.bufs = nil
		for range min(r.count, 8) {
			d.bufs = append(d.bufs, make([]byte, d.size))
		}
		r.count = uint32(len(d.bufs))
	case vidiocQueryBuf:
		b := (*v4l2Buffer)(arg)
		if int(b.index) >= len(d.bufs) {
			return unix.EINVAL
		}
		b.length, b.m = uint32(d.size), b.index*fakeOffsetStep
	case vidiocExpBuf:
		e := (*v4l2ExportBuffer)(arg)
		if d.noExport {
			return unix.ENOTTY
		}
		if int(e.index) >= len(d.bufs) || e.flags&^(unix.O_CLOEXEC|unix.O_ACCMODE) != 0 {
			return unix.EINVAL
		}
		e.fd = int32(d.nextFD)
		d.exported[d.nextFD] = true
		d.nextFD++
	case vidiocQBuf:
		b := (*v4l2Buffer)(arg)
		if int(b.index) >= len(d.bufs) || slices.Contains(d.queued, b.index) ||
			slices.ContainsFunc(d.done, func(q v4l2Buffer) bool { return q.index == b.index }) {
			return unix.EINVAL
		}
		d.queued = append(d.queued, b.index)
	case vidiocDQBuf:
		if len(d.done) == 0 {
			return unix.EAGAIN
		}
		*(*v4l2Buffer)(arg) = d.done[0]
		d.done = d.done[1:]
	case vidiocStreamOn:
		d.streaming = true
	case vidiocStreamOff:
		d.streaming, d.queued, d.done = false, nil, nil
	default:
		d.t.Errorf("unexpected ioctl %#x", req)
		return unix.ENOTTY
	}
	return nil
}

func (d *fakeDriver) mmap(fd int, offset int64, length int) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := int(offset / fakeOffsetStep)
	if fd != d.fd || offset%fakeOffsetStep != 0 || i >= len(d.bufs) || length != d.size {
		return nil, unix.EINVAL
	}
	d.mapped[i] = true
	return d.bufs[i], nil
}

func (d *fakeDriver) munmap(b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, buf := range d.bufs {
		if d.mapped[i] && &buf[0] == &b[0] {
			delete(d.mapped, i)
			return nil
		}
	}
	return unix.EINVAL
}

// poll completes the first queued buffer, as if a frame had just been captured; with none
// to complete it waits on the other descriptors (the stream's wake eventfd) for real.
func (d *fakeDriver) poll(fds []unix.PollFd, timeout time.Duration) (int, error) {
	d.mu.Lock()
	if fds[0].Fd != int32(d.fd) {
		d.mu.Unlock()
		return 0, unix.EBADF
	}
	switch {
	case d.gone:
		fds[0].Revents = unix.POLLERR | unix.POLLHUP | unix.POLLPRI
	case d.queueError:
		fds[0].Revents = unix.POLLERR
	case d.streaming && !d.paused && len(d.queued) > 0:
		i := d.queued[0]
		d.queued = d.queued[1:]
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		// Microseconds, as in a timeval, and distinct: buffers come faster than that here.
		d.stamp = max(ts.Nano()/1000, d.stamp+1)
		b := v4l2Buffer{index: i, typ: bufTypeVideoCapture, memory: memoryMMAP, bytesused: uint32(d.size),
			flags: bufFlagTimestampMonotonic, timestamp: unix.NsecToTimeval(d.stamp * 1000), sequence: d.seq}
		d.seq++
		if d.fill != nil {
			d.fill(&b)
		}
		d.done = append(d.done, b)
		fds[0].Revents = unix.POLLIN
	case len(d.done) > 0:
		fds[0].Revents = unix.POLLIN
	}
	d.mu.Unlock()
	if fds[0].Revents != 0 {
		return 1, nil
	}
	return unix.Poll(fds[1:], int(timeout.Milliseconds()))
}

func (d *fakeDriver) close(fd int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.exported[fd]:
		delete(d.exported, fd)
	case fd == d.fd && !d.devClosed:
		d.devClosed = true
	default:
		return unix.EBADF
	}
	return nil
}

func (d *fakeDriver) setGone(b bool) { d.mu.Lock(); d.gone = b; d.mu.Unlock() }

// checkReleased fails the test if a mapping or an exported descriptor is left over.
func (d *fakeDriver) checkReleased(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.mapped) != 0 || len(d.exported) != 0 {
		t.Errorf("left over: mapped buffers %v, exported descriptors %v", d.mapped, d.exported)
	}
}

func newTestStream(t *testing.T, d *fakeDriver, log *slog.Logger) *mmapStream {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := newMmapStream(d, d.fd, "/dev/video7", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

func TestMmapStream(t *testing.T) {
	d := newFakeDriver(t, 24)
	s := newTestStream(t, d, nil)
	if err := s.start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	want := []string{"REQBUFS"}
	for range bufferCount {
		want = append(want, "QUERYBUF", "EXPBUF")
	}
	for range bufferCount {
		want = append(want, "QBUF")
	}
	want = append(want, "STREAMON")
	if !slices.Equal(d.calls, want) {
		t.Errorf("start made\n%v\nwant\n%v", d.calls, want)
	}

	var last time.Time
	fds := map[int]bool{}
	for i := range 2 * bufferCount {
		ready, err := s.wait()
		if err != nil || !ready {
			t.Fatalf("wait %d: %v, %v", i, ready, err)
		}
		before := time.Now()
		b, err := s.dequeue()
		if err != nil {
			t.Fatalf("dequeue %d: %v", i, err)
		}
		if b.index != uint32(i%bufferCount) || b.seq != uint32(i) || len(b.data) != 24 || b.failed {
			t.Errorf("buffer %d: index %d seq %d %d bytes failed %v", i, b.index, b.seq, len(b.data), b.failed)
		}
		// The driver stamped it at poll: the wall-clock time is just before it was dequeued
		// (or a microsecond after, with the error of the clock offset and of faster stamps).
		if b.untimed || !b.at.After(last) || b.at.After(before.Add(time.Millisecond)) || before.Sub(b.at) > 100*time.Millisecond {
			t.Errorf("buffer %d captured at %v (untimed %v), previous %v, dequeued at %v", i, b.at, b.untimed, last, before)
		}
		last = b.at
		if b.dmabuf == nil || b.dmabuf.Length != 24 {
			t.Fatalf("buffer %d: DMABuf %+v", i, b.dmabuf)
		}
		fds[b.dmabuf.FD] = true
		if err := s.requeue(b.index); err != nil {
			t.Fatalf("requeue %d: %v", i, err)
		}
	}
	if len(fds) != bufferCount {
		t.Errorf("%d distinct DMABUF descriptors, want one per buffer", len(fds))
	}

	d.calls = nil
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !slices.Equal(d.calls, []string{"STREAMOFF", "REQBUFS"}) {
		t.Errorf("stop made %v", d.calls)
	}
	d.checkReleased(t)

	// A second stream on the same descriptor works the same.
	if err := s.start(); err != nil {
		t.Fatalf("start again: %v", err)
	}
	if ready, err := s.wait(); !ready || err != nil {
		t.Fatalf("wait: %v %v", ready, err)
	}
	if _, err := s.dequeue(); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	d.checkReleased(t)
	if err := s.close(); err != nil || !d.devClosed {
		t.Errorf("close: %v, device closed %v", err, d.devClosed)
	}
}

func TestMmapStreamWithoutExport(t *testing.T) {
	d := newFakeDriver(t, 24)
	d.noExport = true
	var logs bytes.Buffer
	s := newTestStream(t, d, slog.New(slog.NewTextHandler(&logs, nil)))
	for range 2 {
		if err := s.start(); err != nil {
			t.Fatalf("start: %v", err)
		}
		if ready, err := s.wait(); !ready || err != nil {
			t.Fatalf("wait: %v %v", ready, err)
		}
		b, err := s.dequeue()
		if err != nil || b.dmabuf != nil || len(b.data) != 24 {
			t.Errorf("dequeue: %v, DMABuf %+v, %d bytes", err, b.dmabuf, len(b.data))
		}
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "DMABUF") {
		t.Errorf("want one log line about DMABUF, got %d:\n%s", n, logs.String())
	}
	if n := slices.Index(d.calls, "EXPBUF"); n < 0 || slices.Index(d.calls[n+1:], "EXPBUF") >= 0 {
		t.Errorf("EXPBUF asked %v: want once only", d.calls)
	}
}

func TestMmapStreamBufferFlags(t *testing.T) {
	d := newFakeDriver(t, 24)
	d.fill = func(b *v4l2Buffer) {
		if b.sequence == 1 {
			b.flags |= bufFlagError
			b.bytesused = 3
		}
	}
	s := newTestStream(t, d, nil)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	for i := range 3 {
		if _, err := s.wait(); err != nil {
			t.Fatal(err)
		}
		b, err := s.dequeue()
		if err != nil {
			t.Fatal(err)
		}
		if b.failed != (i == 1) || len(b.data) != map[bool]int{true: 3, false: 24}[i == 1] {
			t.Errorf("buffer %d: failed %v, %d bytes", i, b.failed, len(b.data))
		}
		s.requeue(b.index)
	}
}

func TestMmapStreamFailures(t *testing.T) {
	t.Run("unplugged", func(t *testing.T) {
		d := newFakeDriver(t, 24)
		s := newTestStream(t, d, nil)
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		d.setGone(true)
		ready, err := s.wait()
		if !ready || err != nil {
			t.Fatalf("wait: %v %v, want ready so that DQBUF says why", ready, err)
		}
		if _, err := s.dequeue(); !errors.Is(err, syscall.ENODEV) {
			t.Errorf("dequeue: %v, want ENODEV", err)
		}
		if err := s.stop(); !errors.Is(err, syscall.ENODEV) {
			t.Errorf("stop: %v, want ENODEV", err)
		}
		d.checkReleased(t) // unmapped anyway: the mappings would keep the device open
	})
	t.Run("queue error does not spin", func(t *testing.T) {
		d := newFakeDriver(t, 24)
		s := newTestStream(t, d, nil)
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		defer s.stop()
		d.queueError = true
		if ready, err := s.wait(); !ready || err != nil {
			t.Fatalf("wait: %v %v", ready, err)
		}
		if _, err := s.dequeue(); !errors.Is(err, syscall.EIO) {
			t.Errorf("dequeue: %v, want EIO", err)
		}
	})
	for _, req := range []string{"REQBUFS", "QUERYBUF", "QBUF", "STREAMON"} {
		t.Run(req+" fails", func(t *testing.T) {
			d := newFakeDriver(t, 24)
			d.fail[req] = syscall.EBUSY
			s := newTestStream(t, d, nil)
			err := s.start()
			if !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "VIDIOC_"+req) {
				t.Fatalf("start: %v, want EBUSY naming VIDIOC_%s", err, req)
			}
			d.checkReleased(t)
			if req != "REQBUFS" && d.calls[len(d.calls)-1] != "REQBUFS" {
				t.Errorf("buffers not freed after a failed start: %v", d.calls)
			}
		})
	}
}

func TestMmapStreamInterrupt(t *testing.T) {
	d := newFakeDriver(t, 24)
	d.paused = true
	s := newTestStream(t, d, nil)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	start := time.Now()
	time.AfterFunc(20*time.Millisecond, s.interrupt)
	ready, err := s.wait()
	if ready || err != nil || time.Since(start) > waitTimeout/2 {
		t.Errorf("wait: %v %v after %v, want an early false", ready, err, time.Since(start))
	}
	// The next stream starts with the wake-up consumed.
	s.stop()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.paused = false
	d.mu.Unlock()
	if ready, err := s.wait(); !ready || err != nil {
		t.Errorf("wait after restart: %v %v", ready, err)
	}
	s.close()
	s.interrupt() // after close: harmless
}

func TestCaptureTime(t *testing.T) {
	now := time.Unix(1_700_000_000, 500_000_000)
	offset := 1_699_000_000 * time.Second // wall minus monotonic
	mono := func(d time.Duration) unix.Timeval { return unix.NsecToTimeval(now.Add(-offset).Add(d).UnixNano()) }
	prev := now.Add(-time.Second)
	tests := []struct {
		name  string
		tv    unix.Timeval
		flags uint32
		prev  time.Time
		want  time.Time
		timed bool
	}{
		{"monotonic", mono(-30 * time.Millisecond), bufFlagTimestampMonotonic, prev, now.Add(-30 * time.Millisecond), true},
		{"monotonic with other flags", mono(-time.Millisecond), bufFlagTimestampMonotonic | bufFlagError | 0x10000, prev,
			now.Add(-time.Millisecond), true},
		{"end of frame stamped ahead", mono(90 * time.Millisecond), bufFlagTimestampMonotonic, prev, now.Add(90 * time.Millisecond), true},
		{"unknown clock", mono(-30 * time.Millisecond), 0, prev, now, false},
		{"copied from output", mono(-30 * time.Millisecond), 0x4000, prev, now, false},
		{"zero", unix.Timeval{}, bufFlagTimestampMonotonic, prev, now, false},
		{"not after the previous frame", mono(-2 * time.Second), bufFlagTimestampMonotonic, prev, now, false},
		{"too far ahead", mono(maxAhead), bufFlagTimestampMonotonic, prev, now, false},
		{"after a frame stamped ahead, still later", unix.Timeval{}, 0, now.Add(50 * time.Millisecond),
			now.Add(50*time.Millisecond + time.Microsecond), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, timed := captureTime(tt.tv, tt.flags, offset, tt.prev, now)
			if !got.Equal(tt.want) || timed != tt.timed {
				t.Errorf("got %v %v, want %v %v", got, timed, tt.want, tt.timed)
			}
		})
	}
}

func TestMonotonicOffset(t *testing.T) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	got := time.Unix(0, ts.Nano()+int64(monotonicOffset()))
	if d := time.Since(got); d < 0 || d > 50*time.Millisecond {
		t.Errorf("monotonic now converted is %v away from the wall clock", d)
	}
}

// TestCameraOnFakeDriver runs the whole capture path, Run over mmapStream, on the fake driver.
func TestCameraOnFakeDriver(t *testing.T) {
	l, err := newLayout(media.PixelFormatYUYV, 4, 2, 12)
	if err != nil {
		t.Fatal(err)
	}
	d := newFakeDriver(t, l.size)
	d.fill = func(b *v4l2Buffer) {
		b.sequence *= 2 // every other frame dropped by the "driver"
		if b.sequence == 6 {
			b.flags |= bufFlagError
		}
	}
	s, err := newMmapStream(d, d.fd, "/dev/video7", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := &Camera{log: slog.New(slog.DiscardHandler), device: "/dev/video7", layout: l, stream: s, stallAfter: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seqs []uint64
	var problems []string
	err = c.Run(ctx, func(f *media.Frame) {
		seqs = append(seqs, f.Seq)
		d.mu.Lock()
		for _, q := range d.queued {
			if &d.bufs[q][0] == &f.Planes[0][0] {
				problems = append(problems, fmt.Sprintf("frame %d: its buffer is queued during emit", f.Seq))
			}
		}
		d.mu.Unlock()
		if f.DMABuf == nil || f.DMABuf.Length != l.size || time.Since(f.CaptureTime) > time.Second {
			problems = append(problems, fmt.Sprintf("frame %d: DMABuf %+v, captured %v", f.Seq, f.DMABuf, f.CaptureTime))
		}
		if len(seqs) == 5 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := []uint64{0, 2, 4, 8, 10}; !slices.Equal(seqs, want) {
		t.Errorf("Seq %v, want %v (the driver's gaps, the failed buffer skipped)", seqs, want)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if st := c.Stats(); st != (Stats{Frames: 5, ErrorBuffers: 1, Dropped: 5}) {
		t.Errorf("stats %+v", st)
	}
	d.checkReleased(t)
	if err := c.Close(); err != nil || !d.devClosed {
		t.Errorf("Close: %v, device closed %v", err, d.devClosed)
	}
}
