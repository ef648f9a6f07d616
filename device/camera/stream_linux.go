package camera

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/internal/media"
)

// waitTimeout bounds one poll, so Run notices a stall; cancelling Run wakes it at once.
const waitTimeout = time.Second

// sysCalls are the system calls a stream makes on its device; tests put a fake driver
// behind them.
type sysCalls interface {
	ioctl(fd int, req uintptr, arg unsafe.Pointer) error
	mmap(fd int, offset int64, length int) ([]byte, error)
	munmap(b []byte) error
	poll(fds []unix.PollFd, timeout time.Duration) (int, error)
	close(fd int) error
}

// kernel is the real thing.
type kernel struct{}

func (kernel) ioctl(fd int, req uintptr, arg unsafe.Pointer) error { return ioctl(fd, req, arg) }
func (kernel) mmap(fd int, offset int64, length int) ([]byte, error) {
	// Writable, so a consumer that writes into a frame gets its bytes changed, not a SIGSEGV.
	return unix.Mmap(fd, offset, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}
func (kernel) munmap(b []byte) error { return unix.Munmap(b) }
func (kernel) poll(fds []unix.PollFd, timeout time.Duration) (int, error) {
	return unix.Poll(fds, int(timeout.Milliseconds()))
}
func (kernel) close(fd int) error { return unix.Close(fd) }

// mmapStream is V4L2 streaming I/O with MMAP buffers on an open capture descriptor. Each
// buffer is also exported as a DMABUF (VIDIOC_EXPBUF) once per stream, so a frame carries a
// descriptor of its memory that a hardware encoder can import.
type mmapStream struct {
	sys    sysCalls
	fd     int
	device string
	log    *slog.Logger

	// wake is an eventfd polled next to the device: interrupt makes it readable.
	wakeMu sync.Mutex
	wake   int
	pfds   [2]unix.PollFd // reused by every wait: no allocation per frame

	bufs      [][]byte
	exports   []*media.DMABuf // per buffer, all nil when the driver cannot export
	noExport  bool            // the driver refused VIDIOC_EXPBUF: do not ask again
	streaming bool
	pollErr   bool          // the last wait saw POLLERR or POLLHUP
	offset    time.Duration // wall clock minus CLOCK_MONOTONIC, taken at STREAMON
	prev      time.Time     // capture time of the previous buffer of this stream
}

func newMmapStream(sys sysCalls, fd int, device string, log *slog.Logger) (*mmapStream, error) {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &mmapStream{sys: sys, fd: fd, device: device, log: log, wake: wake}, nil
}

// start requests and maps the buffers, exports them, queues them all and starts streaming.
// On failure nothing stays allocated.
func (s *mmapStream) start() (err error) {
	s.drainWake()
	req := v4l2RequestBuffers{count: bufferCount, typ: bufTypeVideoCapture, memory: memoryMMAP}
	if err := s.sys.ioctl(s.fd, vidiocReqBufs, unsafe.Pointer(&req)); err != nil {
		return fmt.Errorf("VIDIOC_REQBUFS %d: %w", bufferCount, err)
	}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if req.count == 0 {
		return fmt.Errorf("VIDIOC_REQBUFS %d: the driver gave no buffers: %w", bufferCount, unix.ENOMEM)
	}
	for i := range req.count {
		b := v4l2Buffer{index: i, typ: bufTypeVideoCapture, memory: memoryMMAP}
		if err := s.sys.ioctl(s.fd, vidiocQueryBuf, unsafe.Pointer(&b)); err != nil {
			return fmt.Errorf("VIDIOC_QUERYBUF %d: %w", i, err)
		}
		data, err := s.sys.mmap(s.fd, int64(b.m), int(b.length))
		if err != nil {
			return fmt.Errorf("mmap buffer %d (%d bytes): %w", i, b.length, err)
		}
		s.bufs = append(s.bufs, data)
		s.exports = append(s.exports, s.export(i, int(b.length)))
	}
	if s.noExport {
		s.closeExports() // a driver that exported some but not all: none, for consistency
	}
	for i := range s.bufs {
		if err := s.queue(uint32(i)); err != nil {
			return err
		}
	}
	s.offset, s.prev, s.pollErr = monotonicOffset(), time.Time{}, false
	typ := int32(bufTypeVideoCapture)
	if err := s.sys.ioctl(s.fd, vidiocStreamOn, unsafe.Pointer(&typ)); err != nil {
		return fmt.Errorf("VIDIOC_STREAMON: %w", err)
	}
	s.streaming = true
	return nil
}

// export returns buffer i as a DMABUF, or nil when the driver cannot export, which it logs
// once.
func (s *mmapStream) export(i uint32, length int) *media.DMABuf {
	if s.noExport {
		return nil
	}
	e := v4l2ExportBuffer{typ: bufTypeVideoCapture, index: i, flags: unix.O_RDWR | unix.O_CLOEXEC}
	if err := s.sys.ioctl(s.fd, vidiocExpBuf, unsafe.Pointer(&e)); err != nil {
		s.noExport = true
		s.log.Info("camera cannot export its buffers as DMABUF; frames carry none, so a hardware encoder must copy them",
			"device", s.device, "err", fmt.Errorf("VIDIOC_EXPBUF %d: %w", i, err))
		return nil
	}
	return &media.DMABuf{FD: int(e.fd), Length: length}
}

func (s *mmapStream) queue(index uint32) error {
	b := v4l2Buffer{index: index, typ: bufTypeVideoCapture, memory: memoryMMAP}
	if err := s.sys.ioctl(s.fd, vidiocQBuf, unsafe.Pointer(&b)); err != nil {
		return fmt.Errorf("VIDIOC_QBUF %d: %w", index, err)
	}
	return nil
}

func (s *mmapStream) wait() (bool, error) {
	s.pfds = [2]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(s.wake), Events: unix.POLLIN}}
	_, err := s.sys.poll(s.pfds[:], waitTimeout)
	if errors.Is(err, unix.EINTR) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("poll: %w", err)
	}
	ev := s.pfds[0].Revents
	switch {
	case ev&unix.POLLNVAL != 0:
		return false, fmt.Errorf("poll: %w", unix.EBADF)
	case ev&(unix.POLLERR|unix.POLLHUP) != 0:
		// An unplugged device or a failed queue: VIDIOC_DQBUF says which.
		s.pollErr = true
		return true, nil
	}
	return ev&unix.POLLIN != 0, nil
}

// interrupt makes a wait in progress, or the next one, return at once. Safe from any
// goroutine, also after close.
func (s *mmapStream) interrupt() {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.wake >= 0 {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(s.wake, one[:]) // only fails when the counter is already high
	}
}

func (s *mmapStream) drainWake() {
	var b [8]byte
	_, _ = unix.Read(s.wake, b[:]) // EAGAIN when not woken
}

func (s *mmapStream) dequeue() (dequeued, error) {
	b := v4l2Buffer{typ: bufTypeVideoCapture, memory: memoryMMAP}
	if err := s.sys.ioctl(s.fd, vidiocDQBuf, unsafe.Pointer(&b)); err != nil {
		if errors.Is(err, unix.EAGAIN) && s.pollErr {
			// poll reported an error that DQBUF does not: waiting again would spin.
			return dequeued{}, fmt.Errorf("VIDIOC_DQBUF: poll reported an error, no buffer is done: %w", unix.EIO)
		}
		return dequeued{}, fmt.Errorf("VIDIOC_DQBUF: %w", err)
	}
	s.pollErr = false
	if int(b.index) >= len(s.bufs) {
		return dequeued{}, fmt.Errorf("VIDIOC_DQBUF: the driver returned buffer %d of %d: %w", b.index, len(s.bufs), unix.EIO)
	}
	data := s.bufs[b.index]
	data = data[:min(int(b.bytesused), len(data))]
	at, timed := captureTime(b.timestamp, b.flags, s.offset, s.prev, time.Now())
	s.prev = at
	return dequeued{
		data: data, index: b.index, seq: b.sequence, at: at, untimed: !timed,
		failed: b.flags&bufFlagError != 0, dmabuf: s.exports[b.index],
	}, nil
}

func (s *mmapStream) requeue(index uint32) error { return s.queue(index) }

// stop ends streaming and frees the buffers. The exported descriptors are closed, so a
// consumer that kept one past emit has it refer to freed memory no longer.
func (s *mmapStream) stop() error {
	var err error
	if s.streaming {
		typ := int32(bufTypeVideoCapture)
		if e := s.sys.ioctl(s.fd, vidiocStreamOff, unsafe.Pointer(&typ)); e != nil {
			err = fmt.Errorf("VIDIOC_STREAMOFF: %w", e)
		}
		s.streaming = false
	}
	if e := s.release(); err == nil {
		err = e
	}
	return err
}

// release closes the exported descriptors, unmaps the buffers and frees them in the driver.
// The unmapping matters for replugging: a mapping holds the device file open, and some
// drivers (vivid among them) come back only when the last descriptor is closed.
func (s *mmapStream) release() error {
	var errs []error
	s.closeExports()
	for i, b := range s.bufs {
		if err := s.sys.munmap(b); err != nil {
			errs = append(errs, fmt.Errorf("munmap buffer %d: %w", i, err))
		}
	}
	s.bufs, s.exports = s.bufs[:0], s.exports[:0]
	req := v4l2RequestBuffers{count: 0, typ: bufTypeVideoCapture, memory: memoryMMAP}
	if err := s.sys.ioctl(s.fd, vidiocReqBufs, unsafe.Pointer(&req)); err != nil {
		errs = append(errs, fmt.Errorf("VIDIOC_REQBUFS 0: %w", err))
	}
	return errors.Join(errs...)
}

func (s *mmapStream) closeExports() {
	for i, e := range s.exports {
		if e != nil {
			_ = s.sys.close(e.FD) // a dma-buf descriptor: close cannot fail in a way that matters
			s.exports[i] = nil
		}
	}
}

// close closes the device. stop must have been called after a successful start.
func (s *mmapStream) close() error {
	s.wakeMu.Lock()
	if s.wake >= 0 {
		unix.Close(s.wake)
		s.wake = -1
	}
	s.wakeMu.Unlock()
	if err := s.sys.close(s.fd); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// captureTime converts a buffer timestamp to wall-clock time, and says whether it could.
// Drivers stamp buffers with CLOCK_MONOTONIC; offset (wall minus monotonic) is taken once per
// stream, so frame times keep the spacing the kernel measured even if the wall clock is
// stepped meanwhile. A stamp may lie somewhat ahead of now: a driver that stamps the end of
// the frame can do so in advance (vivid adds 0.9 frame intervals to its tick). A buffer
// without a usable stamp gets now, the time it was dequeued: one without a monotonic stamp,
// one whose stamp is not after the previous frame's (prev; a driver that stamps a buffer
// after handing it over shows its stale stamp), and one too far ahead. Times strictly
// increase within a stream.
func captureTime(tv unix.Timeval, flags uint32, offset time.Duration, prev, now time.Time) (time.Time, bool) {
	if flags&bufFlagTimestampMask == bufFlagTimestampMonotonic && (tv.Sec != 0 || tv.Usec != 0) {
		t := time.Unix(0, tv.Nano()+int64(offset))
		if t.After(prev) && t.Before(now.Add(maxAhead)) {
			return t, true
		}
	}
	if !now.After(prev) { // the previous stamp was ahead of the clock
		now = prev.Add(time.Microsecond)
	}
	return now, false
}

// maxAhead bounds how far ahead of its dequeue a buffer's timestamp is believed.
const maxAhead = 2 * time.Second

// monotonicOffset is the wall clock minus CLOCK_MONOTONIC, read so that the error is the
// shortest of a few tries at reading the two clocks back to back.
func monotonicOffset() time.Duration {
	best, offset := time.Duration(math.MaxInt64), time.Duration(0)
	for range 3 {
		var a, b unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &a) // cannot fail for this clock
		wall := time.Now()
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
		if d := time.Duration(b.Nano() - a.Nano()); d < best {
			best = d
			offset = time.Duration(wall.UnixNano() - (a.Nano()+b.Nano())/2)
		}
	}
	return offset
}
