//go:build vboardguest && linux

package camera

// These tests run inside the virtual board (internal/vboard), as root, against the kernel's
// vivid driver: a real V4L2 capture device with its own buffer queue, timestamps, DMABUF
// export, and controls that unplug it and make it fail buffers.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/pipeline"

	"github.com/edgeflux/edge/internal/v4l2"
)

// What the tests ask of vivid's webcam input: a rate slow enough for an emulated CPU.
const (
	vividWidth  = 640
	vividHeight = 480
	vividFPS    = 10
	// collectFrames is how many frames the capture tests look at.
	collectFrames = 10
	// resumeWithin is how soon after a failure frames must flow again: the pipeline's first
	// retry comes after 1 s.
	resumeWithin = 3 * time.Second
)

// vivid's controls (drivers/media/test-drivers/vivid/vivid-ctrls.c) are found by name; the
// ids are Linux 6.1's, logged when they differ so that a renumbering is noticed.
const (
	vividCIDBase = 0x00f00000 | 0xf000 // VIVID_CID_VIVID_BASE
	// "Disconnect" unregisters every vivid node until the last descriptor is closed.
	vividDisconnect, vividCIDDisconnect = "Disconnect", vividCIDBase + 65
	// "Inject V4L2_BUF_FLAG_ERROR" flags the next buffer vivid fills.
	vividDQBufError, vividCIDDQBufError = "Inject V4L2_BUF_FLAG_ERROR", vividCIDBase + 66
	// "Inject Fatal Streaming Error" calls vb2_queue_error: poll says POLLERR, DQBUF EIO.
	vividQueueError, vividCIDQueueError = "Inject Fatal Streaming Error", vividCIDBase + 70
)

const (
	ctrlFlagDisabled = 0x0001
	ctrlFlagNextCtrl = 0x80000000
	vidiocQueryCtrl  = 3<<30 | unsafe.Sizeof(v4l2QueryCtrl{})<<16 | 'V'<<8 | 36
	vidiocSCtrl      = 3<<30 | unsafe.Sizeof(v4l2Control{})<<16 | 'V'<<8 | 28
)

type v4l2QueryCtrl struct {
	id, typ               uint32
	name                  [32]byte
	min, max, step, deflt int32
	flags                 uint32
	reserved              [2]uint32
}

type v4l2Control struct {
	id    uint32
	value int32
}

// onBoard skips unless this is the virtual board, and returns vivid's video capture node.
func onBoard(t *testing.T) string {
	t.Helper()
	if os.Getenv("VBOARD") != "1" {
		t.Skip("not on the virtual board (VBOARD=1 is set by internal/vboard's /init)")
	}
	nodes, _ := filepath.Glob("/dev/video*")
	sortDevices(nodes)
	for _, n := range nodes {
		fd, err := unix.Open(n, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		vc, err := v4l2.QueryCap(fd)
		unix.Close(fd)
		caps := nodeCaps(vc.Capabilities, vc.DeviceCaps)
		if err == nil && vc.Driver == "vivid" && captureKind(caps) == "" && caps&capVideoCapture != 0 {
			return n
		}
	}
	t.Fatalf("no vivid video capture node among %v", nodes)
	return ""
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil)) // Info: vivid offers 86 formats at Debug
}

func vividConfig(dev, format string) Config {
	return Config{Device: dev, Format: format, Width: vividWidth, Height: vividHeight, FPS: vividFPS}
}

// pressControl sets a vivid button control by name on a descriptor of its own, and closes it:
// the way another process (v4l2-ctl) would.
func pressControl(t *testing.T, dev, name string, wantID uint32) {
	t.Helper()
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s to set %q: %v", dev, name, err)
	}
	defer unix.Close(fd)
	id := findControl(t, fd, name, wantID)
	c := v4l2Control{id: id, value: 1}
	if err := ioctl(fd, vidiocSCtrl, unsafe.Pointer(&c)); err != nil {
		t.Fatalf("VIDIOC_S_CTRL %q (%#x) on %s: %v", name, id, dev, err)
	}
}

// findControl walks the controls with V4L2_CTRL_FLAG_NEXT_CTRL for the one called name.
func findControl(t *testing.T, fd int, name string, wantID uint32) uint32 {
	t.Helper()
	var names []string
	q := v4l2QueryCtrl{id: ctrlFlagNextCtrl}
	for ioctl(fd, vidiocQueryCtrl, unsafe.Pointer(&q)) == nil {
		n := v4l2.CString(q.name[:])
		if n == name && q.flags&ctrlFlagDisabled == 0 {
			if q.id != wantID {
				t.Logf("vivid control %q has id %#x, not %#x as in Linux 6.1", name, q.id, wantID)
			}
			return q.id
		}
		names = append(names, n)
		q = v4l2QueryCtrl{id: q.id | ctrlFlagNextCtrl}
	}
	t.Fatalf("no control %q; the device has %q", name, names)
	return 0
}

// frameChecks returns a frameLog check that a frame is what vivid was asked for, and that its
// DMABuf is the frame's memory: same size as the buffer, and the same bytes.
func frameChecks(format media.PixelFormat, strides []int) func(f *media.Frame) string {
	return func(f *media.Frame) string {
		if f.Format != format || f.Width != vividWidth || f.Height != vividHeight {
			return fmt.Sprintf("%v %dx%d, want %v %dx%d", f.Format, f.Width, f.Height, format, vividWidth, vividHeight)
		}
		rows := []int{vividHeight, vividHeight / 2}
		for i, s := range strides {
			if f.Strides[i] != s || len(f.Planes[i]) != s*rows[i] {
				return fmt.Sprintf("plane %d: stride %d, %d bytes; want stride %d, %d bytes", i, f.Strides[i], len(f.Planes[i]), s, s*rows[i])
			}
		}
		if f.DMABuf == nil {
			return "no DMABuf"
		}
		var st unix.Stat_t
		if err := unix.Fstat(f.DMABuf.FD, &st); err != nil {
			return fmt.Sprintf("fstat DMABuf %d: %v", f.DMABuf.FD, err)
		}
		// The dma-buf is the allocation, rounded up to whole pages; Length is the V4L2 buffer's.
		if page := int64(os.Getpagesize()); st.Size < int64(f.DMABuf.Length) || st.Size >= int64(f.DMABuf.Length)+page {
			return fmt.Sprintf("DMABuf %d is %d bytes, Length says %d", f.DMABuf.FD, st.Size, f.DMABuf.Length)
		}
		m, err := unix.Mmap(f.DMABuf.FD, 0, f.DMABuf.Length, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return fmt.Sprintf("mmap DMABuf %d: %v", f.DMABuf.FD, err)
		}
		defer unix.Munmap(m)
		p := f.Planes[0]
		if len(m) < len(p) || !slices.Equal(m[:len(p)], p) {
			return "DMABuf bytes differ from the frame's"
		}
		if slices.Max(p) == slices.Min(p) {
			return "a blank picture"
		}
		return ""
	}
}

func TestVBoardCaptureYUYV(t *testing.T) {
	testCapture(t, "yuyv", media.PixelFormatYUYV, []int{2 * vividWidth})
}

func TestVBoardCaptureNV12(t *testing.T) {
	testCapture(t, "nv12", media.PixelFormatNV12, []int{vividWidth, vividWidth})
}

func testCapture(t *testing.T, format string, want media.PixelFormat, strides []int) {
	dev := onBoard(t)
	cam, err := Open(vividConfig(dev, format), testLog(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer cam.Close()
	if m := cam.Mode(); m != (Mode{Format: want, Width: vividWidth, Height: vividHeight, FPS: vividFPS}) {
		t.Errorf("mode %+v", m)
	}
	l := &frameLog{check: frameChecks(want, strides)}
	inodes := map[int]uint64{} // of the DMABuf descriptors
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- cam.Run(ctx, func(f *media.Frame) {
			var st unix.Stat_t
			if f.DMABuf != nil && unix.Fstat(f.DMABuf.FD, &st) == nil {
				inodes[f.DMABuf.FD] = st.Ino
			}
			l.Encode(f)
			if len(l.seen()) == collectFrames {
				cancel()
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatalf("%d frames in 30 s", len(l.seen()))
	}

	got := l.seen()
	for i, f := range got {
		if f.problem != "" {
			t.Errorf("frame %d: %s", f.seq, f.problem)
		}
		if i > 0 && f.seq <= got[i-1].seq {
			t.Errorf("frame %d follows %d", f.seq, got[i-1].seq)
		}
		if i > 0 && !f.captured.After(got[i-1].captured) {
			t.Errorf("frame %d captured at %v, not after frame %d at %v", f.seq, f.captured, got[i-1].seq, got[i-1].captured)
		}
		// vivid stamps the end of the frame when it starts filling it: 0.9 frame intervals
		// ahead, less the time filling and handing over takes.
		if age := f.received.Sub(f.captured); age < -time.Second/vividFPS || age > 500*time.Millisecond {
			t.Errorf("frame %d captured %v before it was received", f.seq, age)
		}
	}
	if len(inodes) == 0 || len(inodes) > bufferCount {
		t.Errorf("%d distinct DMABuf descriptors, want 1 to %d (one per buffer)", len(inodes), bufferCount)
	}
	// Run closed the exported descriptors when it stopped.
	for fd, ino := range inodes {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Ino == ino {
			t.Errorf("DMABuf descriptor %d still open after Run", fd)
		}
	}
	// Seq is consecutive but where vivid's own sequence numbers say it dropped a frame (its
	// clock ticked with no buffer queued, or its thread ran late on the emulated CPU).
	st := cam.Stats()
	if numbers := got[len(got)-1].seq - got[0].seq + 1; st.Frames != collectFrames || st.ErrorBuffers != 0 ||
		st.ShortBuffers != 0 || numbers != st.Frames+st.Dropped || st.Dropped > 2 {
		t.Errorf("Seq %d to %d with stats %+v: want %d frames, Seq consecutive but for at most 2 the driver dropped",
			got[0].seq, got[len(got)-1].seq, st, collectFrames)
	}
	// CaptureTime is the kernel's timestamp. vivid sets it just after handing the buffer over
	// (vivid-kthread-cap.c), so on more than one CPU a buffer may rarely show its stale stamp,
	// which Run replaces by the time of the dequeue.
	if st.Untimed > 1 {
		t.Errorf("%d of %d frames without a usable kernel timestamp", st.Untimed, st.Frames)
	}
	span := got[len(got)-1].captured.Sub(got[0].captured)
	t.Logf("%d frames of %v over %v (%.1f fps by the kernel's timestamps); the driver dropped %d, %d untimed",
		len(got), want, span, float64(len(got)-1)/span.Seconds(), st.Dropped, st.Untimed)
}

// newSourcePipeline runs a Source on vivid in the real pipeline (retry from 1 s, as edged
// has it), with a frameLog as encoder and sink.
func newSourcePipeline(t *testing.T, dev string) (*Source, *frameLog, *pipeline.Pipeline) {
	t.Helper()
	log := testLog(t)
	src := NewSource(vividConfig(dev, "yuyv"), log.With("component", "camera"))
	if _, err := src.Probe(); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	l := &frameLog{check: frameChecks(media.PixelFormatYUYV, []int{2 * vividWidth})}
	p := runPipeline(t, src, l, time.Second, log.With("component", "pipeline"))
	l.waitFrames(t, 0, 5, 30*time.Second)
	return src, l, p
}

// waitStatusErr waits until the pipeline reports that its source failed with target.
func waitStatusErr(t *testing.T, p *pipeline.Pipeline, target error, timeout time.Duration) error {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if err := p.Status().Err; err != nil && errors.Is(err, target) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("the source did not fail with %v within %v (status %+v)", target, timeout, p.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkResumed waits for frames after the first `after`, at most resumeWithin after since,
// and checks that Seq and CaptureTime went on increasing across the outage.
func checkResumed(t *testing.T, l *frameLog, after int, since time.Time) {
	t.Helper()
	got := l.waitFrames(t, after, 3, time.Until(since.Add(resumeWithin))+time.Second)
	first := got[after]
	if d := first.received.Sub(since); d > resumeWithin {
		t.Errorf("frames resumed %v later, want within %v", d.Round(time.Millisecond), resumeWithin)
	} else {
		t.Logf("frames resumed %v later", d.Round(time.Millisecond))
	}
	for i := 1; i < len(got); i++ {
		if got[i].seq <= got[i-1].seq || !got[i].captured.After(got[i-1].captured) {
			t.Errorf("frame %d (captured %v) after frame %d (captured %v)", got[i].seq, got[i].captured, got[i-1].seq, got[i-1].captured)
		}
	}
	for _, f := range got {
		if f.problem != "" {
			t.Errorf("frame %d: %s", f.seq, f.problem)
		}
	}
}

func TestVBoardSurvivesDisconnect(t *testing.T) {
	dev := onBoard(t)
	_, l, p := newSourcePipeline(t, dev)

	pressed := time.Now()
	pressControl(t, dev, vividDisconnect, vividCIDDisconnect)
	err := waitStatusErr(t, p, syscall.ENODEV, 2*time.Second)
	if !errors.Is(err, ErrNoDevice) {
		t.Errorf("status error %v does not match ErrNoDevice", err)
	}
	t.Logf("capture failed %v after the disconnect: %v", time.Since(pressed).Round(time.Millisecond), err)
	stopped := len(l.seen())
	// The node is gone while the source's descriptors were open; now it is back.
	checkResumed(t, l, stopped, pressed)
	if _, err := os.Stat(dev); err != nil {
		t.Errorf("%s after the reconnect: %v", dev, err)
	}
}

func TestVBoardSurvivesBufferErrors(t *testing.T) {
	dev := onBoard(t)

	t.Run("flagged buffers are skipped", func(t *testing.T) {
		src, l, p := newSourcePipeline(t, dev)
		const inject = 3
		for i := range inject {
			before := src.Stats().ErrorBuffers
			pressControl(t, dev, vividDQBufError, vividCIDDQBufError)
			deadline := time.Now().Add(resumeWithin)
			for src.Stats().ErrorBuffers == before {
				if time.Now().After(deadline) {
					t.Fatalf("injected error %d not counted within %v (stats %+v)", i, resumeWithin, src.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		now := time.Now()
		n := len(l.seen())
		checkResumed(t, l, n, now)
		got := l.seen()
		var gaps uint64
		for i := 1; i < len(got); i++ {
			gaps += got[i].seq - got[i-1].seq - 1
		}
		if st := src.Stats(); st.ErrorBuffers != inject || gaps < inject {
			t.Errorf("stats %+v, %d numbers skipped in Seq: want %d failed buffers skipped", st, gaps, inject)
		}
		if err := p.Status().Err; err != nil {
			t.Errorf("a failed buffer failed the stream: %v", err)
		}
	})

	t.Run("failed buffers in a row reset the stream", func(t *testing.T) {
		src, l, p := newSourcePipeline(t, dev)
		// Flag every buffer, from a descriptor of our own, until the source gives up.
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		id := findControl(t, fd, vividDQBufError, vividCIDDQBufError)
		stop := make(chan struct{})
		pressing := make(chan struct{})
		go func() {
			defer close(pressing)
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				c := v4l2Control{id: id, value: 1}
				ioctl(fd, vidiocSCtrl, unsafe.Pointer(&c))
			}
		}()
		start := time.Now()
		err = waitStatusErr(t, p, ErrBadBuffers, (maxBadBuffers+10)*time.Second/vividFPS)
		close(stop)
		<-pressing
		unix.Close(fd)
		failed := time.Now()
		t.Logf("gave up %v after the first injection: %v (stats %+v)", failed.Sub(start).Round(time.Millisecond), err, src.Stats())
		if st := src.Stats(); st.ErrorBuffers < maxBadBuffers {
			t.Errorf("stats %+v: want at least %d failed buffers", st, maxBadBuffers)
		}
		checkResumed(t, l, len(l.seen()), failed)
	})

	t.Run("a fatal queue error reopens the device", func(t *testing.T) {
		_, l, p := newSourcePipeline(t, dev)
		pressed := time.Now()
		pressControl(t, dev, vividQueueError, vividCIDQueueError)
		err := waitStatusErr(t, p, syscall.EIO, 2*time.Second)
		t.Logf("capture failed %v after the queue error: %v", time.Since(pressed).Round(time.Millisecond), err)
		checkResumed(t, l, len(l.seen()), pressed)
	})
}
