//go:build vboardguest && linux && cgo

package v4l2m2m

// These tests run inside the virtual board (internal/vboard), as root, against the kernel's
// vicodec driver: a real V4L2 stateful encoder (coded format FWHT) with the same
// memory-to-memory API and ioctl sequence as a Raspberry Pi's H.264 encoder, and its stateful
// decoder, which the tests use to check what came out. Frames come from device/testpattern
// (drawn as I420, NV12 or YUYV) and from vivid, the kernel's virtual camera, whose buffers
// are also imported as DMABUF. vicodec is single-planar unless the kernel command line has
// vicodec.multiplanar=1; the tests use whichever API the node has and say which.
//
// Build (static, cgo):
//
//	CGO_ENABLED=1 go test -c -tags vboardguest -ldflags '-linkmode=external -extldflags=-static' \
//	    -o v4l2m2m.test ./encoder/v4l2m2m

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/device/camera"
	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/internal/media"

	"github.com/edgeflux/edge/internal/v4l2"
)

const (
	minPSNR = 30.0
	// guestTimeout bounds every wait on vicodec: an emulated CPU encodes 1080p slowly.
	guestTimeout = 10 * time.Second
)

// ---- finding the nodes ----

type nodes struct {
	encoder, decoder, vivid string
	mplane                  bool
}

// findNodes looks at every /dev/video* once: vicodec's stateful encoder is the node whose
// CAPTURE queue enumerates FWHT, its stateful decoder the one whose OUTPUT queue does (the
// stateless decoder's takes FWHT_STATELESS); all three answer QUERYCAP with driver and card
// "vicodec". vivid's capture node is the camera.
func findNodes(t testing.TB) nodes {
	t.Helper()
	paths, _ := filepath.Glob("/dev/video*")
	var n nodes
	for _, p := range paths {
		d, err := openDevice(p)
		if err != nil {
			continue
		}
		switch {
		case d.driver == "vicodec" && d.isM2M():
			capFmts, _ := d.enumFormats(d.capType())
			outFmts, _ := d.enumFormats(d.outType())
			switch {
			case slices.Contains(capFmts, FourCCFWHT):
				n.encoder, n.mplane = p, d.mplane
			case slices.Contains(outFmts, FourCCFWHT):
				n.decoder = p
			}
		case d.driver == "vivid" && d.caps&capVideoCapture != 0 && n.vivid == "":
			n.vivid = p
		}
		d.close()
	}
	if n.encoder == "" || n.decoder == "" {
		t.Skipf("no vicodec stateful encoder and decoder among %v (not the virtual board?)", paths)
	}
	return n
}

// checkAPI makes sure the node's API is the one vicodec's module parameter selects.
func checkAPI(t *testing.T, n nodes) {
	t.Helper()
	api := "single-planar"
	if n.mplane {
		api = "multi-planar"
	}
	t.Logf("vicodec encoder %s, decoder %s, %s API; vivid %q", n.encoder, n.decoder, api, n.vivid)
	if b, err := os.ReadFile("/sys/module/vicodec/parameters/multiplanar"); err == nil {
		want := strings.TrimSpace(string(b)) == "Y"
		if want != n.mplane {
			t.Errorf("vicodec.multiplanar=%s but the node uses the %s API", strings.TrimSpace(string(b)), api)
		}
	}
}

// ---- logging ----

type testWriter struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *testWriter) count(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Count(w.b.String(), substr)
}

func testLog(t testing.TB) (*slog.Logger, *testWriter) {
	w := &testWriter{t: t}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

// ---- the encoder under test ----

func openFWHT(t testing.TB, n nodes, w, h int, in media.PixelFormat, mem Memory, log *slog.Logger) *Encoder {
	t.Helper()
	if log == nil {
		log, _ = testLog(t)
	}
	e, err := New(encoder.Config{Width: w, Height: h, FPS: 30, BitrateBps: 2_000_000, KeyframeInterval: time.Second},
		Options{Device: n.encoder, CodedFormat: FourCCFWHT, InputFormat: in, Memory: mem, Timeout: guestTimeout, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// ---- synthetic frames ----

// synth draws test-pattern frames in the wanted layout. The pattern is I420; NV12 and YUYV
// are made from it (YUYV repeats each chroma row), and each frame is a fresh copy, so the
// reference the decoded picture is compared with is exactly what was fed.
type synth struct {
	src    *testpattern.Source
	format media.PixelFormat
	noise  *rand.Rand
}

func newSynth(t testing.TB, w, h int, format media.PixelFormat) *synth {
	t.Helper()
	src, err := testpattern.New(testpattern.Config{Width: w, Height: h, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	return &synth{src: src, format: format}
}

func (s *synth) frame(seq uint64) *media.Frame {
	p := s.src.Draw(seq, time.Unix(1700000000, 0).Add(time.Duration(seq)*time.Second/30))
	w, h := p.Width, p.Height
	if s.noise != nil {
		y := p.Planes[0]
		for i := w * h / 4; i < len(y); i++ {
			y[i] += byte(s.noise.IntN(24))
		}
	}
	f := &media.Frame{Format: s.format, Width: w, Height: h, Seq: seq, CaptureTime: p.CaptureTime}
	switch s.format {
	case media.PixelFormatI420:
		buf := make([]byte, w*h*3/2)
		copy(buf, p.Planes[0][:w*h])
		copy(buf[w*h:], p.Planes[1][:w*h/4])
		copy(buf[w*h*5/4:], p.Planes[2][:w*h/4])
		f.Planes = [3][]byte{buf[:w*h], buf[w*h : w*h*5/4], buf[w*h*5/4:]}
		f.Strides = [3]int{w, w / 2, w / 2}
	case media.PixelFormatNV12:
		buf := make([]byte, w*h*3/2)
		copy(buf, p.Planes[0][:w*h])
		uv := buf[w*h:]
		for i := range w * h / 4 {
			uv[2*i], uv[2*i+1] = p.Planes[1][i], p.Planes[2][i]
		}
		f.Planes = [3][]byte{buf[:w*h], uv}
		f.Strides = [3]int{w, w}
	case media.PixelFormatYUYV:
		buf := make([]byte, w*h*2)
		for y := range h {
			row := buf[y*2*w:]
			for x := 0; x < w; x += 2 {
				c := y/2*(w/2) + x/2
				row[2*x], row[2*x+1], row[2*x+2], row[2*x+3] = p.Planes[0][y*w+x], p.Planes[1][c], p.Planes[0][y*w+x+1], p.Planes[2][c]
			}
		}
		f.Planes = [3][]byte{buf}
		f.Strides = [3]int{2 * w}
	}
	return f
}

// ---- pictures and PSNR ----

// picture is a planar YUV picture: chroma at cw x ch.
type picture struct {
	w, h, cw, ch int
	y, u, v      []byte
}

// planarOf copies a frame into a planar picture at its own chroma subsampling (4:2:0 for
// I420 and NV12, 4:2:2 for YUYV).
func planarOf(f *media.Frame) picture {
	w, h := f.Width, f.Height
	p := picture{w: w, h: h, cw: w / 2, ch: h / 2}
	if f.Format == media.PixelFormatYUYV {
		p.ch = h
	}
	p.y = make([]byte, w*h)
	p.u = make([]byte, p.cw*p.ch)
	p.v = make([]byte, p.cw*p.ch)
	switch f.Format {
	case media.PixelFormatI420:
		for r := range h {
			copy(p.y[r*w:(r+1)*w], f.Planes[0][r*f.Strides[0]:])
		}
		for r := range p.ch {
			copy(p.u[r*p.cw:(r+1)*p.cw], f.Planes[1][r*f.Strides[1]:])
			copy(p.v[r*p.cw:(r+1)*p.cw], f.Planes[2][r*f.Strides[2]:])
		}
	case media.PixelFormatNV12:
		for r := range h {
			copy(p.y[r*w:(r+1)*w], f.Planes[0][r*f.Strides[0]:])
		}
		for r := range p.ch {
			for x := range p.cw {
				p.u[r*p.cw+x] = f.Planes[1][r*f.Strides[1]+2*x]
				p.v[r*p.cw+x] = f.Planes[1][r*f.Strides[1]+2*x+1]
			}
		}
	case media.PixelFormatYUYV:
		for r := range h {
			row := f.Planes[0][r*f.Strides[0]:]
			for x := range w {
				p.y[r*w+x] = row[2*x]
			}
			for x := range p.cw {
				p.u[r*p.cw+x], p.v[r*p.cw+x] = row[4*x+1], row[4*x+3]
			}
		}
	}
	return p
}

// psnr compares all three planes of two pictures of the same size and subsampling.
func psnr(a, b picture) (float64, error) {
	if a.w != b.w || a.h != b.h || a.cw != b.cw || a.ch != b.ch {
		return 0, fmt.Errorf("pictures differ in size: %dx%d (chroma %dx%d) vs %dx%d (chroma %dx%d)",
			a.w, a.h, a.cw, a.ch, b.w, b.h, b.cw, b.ch)
	}
	var sum float64
	n := 0
	for _, pl := range [][2][]byte{{a.y, b.y}, {a.u, b.u}, {a.v, b.v}} {
		for i := range pl[0] {
			d := float64(pl[0][i]) - float64(pl[1][i])
			sum += d * d
		}
		n += len(pl[0])
	}
	if sum == 0 {
		return math.Inf(1), nil
	}
	return 10 * math.Log10(255*255/(sum/float64(n))), nil
}

// ---- vicodec's stateful decoder, as dev-decoder.rst drives it ----

type decoder struct {
	t        testing.TB
	d        *device
	out, cap []slot
	capFmt   format
	w, h     int // visible size
	pics     []picture
	capOn    bool
}

func newDecoder(t testing.TB, path string, w, h int) *decoder {
	t.Helper()
	d, err := openDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	x := &decoder{t: t, d: d, w: w, h: h}
	t.Cleanup(x.close)
	must(t, d.subscribe(eventSourceChange))
	if _, err := d.setFormat(format{Type: d.outType(), PixelFormat: FourCCFWHT, Width: uint32(w), Height: uint32(h), NumPlanes: 1}); err != nil {
		t.Fatal(err)
	}
	x.out = x.alloc(d.outType(), 4)
	must(t, d.stream(d.outType(), true))
	return x
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (x *decoder) alloc(typ uint32, count int) []slot {
	n, err := x.d.reqbufs(typ, memoryMMAP, count)
	must(x.t, err)
	slots := make([]slot, n)
	for i := range slots {
		b := buffer{typ: typ, memory: memoryMMAP, index: uint32(i)}
		must(x.t, x.d.querybuf(&b))
		m, err := x.d.mmap(b.offset[0], b.length[0])
		must(x.t, err)
		slots[i].planes = [][]byte{m}
	}
	return slots
}

func (x *decoder) close() {
	_ = unmapAll(x.out, x.cap)
	x.out, x.cap = nil, nil
	x.d.close()
}

func (x *decoder) queueCap(i int) {
	b := buffer{typ: x.d.capType(), memory: memoryMMAP, index: uint32(i), numPlanes: 1}
	b.length[0] = uint32(len(x.cap[i].planes[0]))
	must(x.t, x.d.qbuf(&b))
	x.cap[i].queued = true
}

// decode feeds one FWHT frame and waits for its picture.
func (x *decoder) decode(au []byte) picture {
	x.t.Helper()
	d := x.d
	deadline := time.Now().Add(guestTimeout)
	idx := -1
	for {
		for i := range x.out {
			if !x.out[i].queued {
				idx = i
				break
			}
		}
		if idx >= 0 {
			break
		}
		x.poll(deadline)
	}
	copy(x.out[idx].planes[0], au)
	b := buffer{typ: d.outType(), memory: memoryMMAP, index: uint32(idx), numPlanes: 1}
	b.bytesused[0] = uint32(len(au))
	b.length[0] = uint32(len(x.out[idx].planes[0]))
	must(x.t, d.qbuf(&b))
	x.out[idx].queued = true
	want := len(x.pics) + 1
	for len(x.pics) < want {
		x.poll(deadline)
	}
	return x.pics[want-1]
}

// poll handles whatever is ready: a source change (allocate CAPTURE), done OUTPUT buffers,
// decoded pictures.
func (x *decoder) poll(deadline time.Time) {
	x.t.Helper()
	d := x.d
	left := time.Until(deadline)
	if left <= 0 {
		x.t.Fatalf("decoder: nothing within %v", guestTimeout)
	}
	rev, err := d.poll(left)
	must(x.t, err)
	if rev&pollPri != 0 {
		for {
			typ, _, ok, err := d.dqevent()
			must(x.t, err)
			if !ok {
				break
			}
			if typ == eventSourceChange && !x.capOn {
				x.capFmt, err = d.getFormat(d.capType())
				must(x.t, err)
				x.cap = x.alloc(d.capType(), 4)
				for i := range x.cap {
					x.queueCap(i)
				}
				must(x.t, d.stream(d.capType(), true))
				x.capOn = true
			}
		}
	}
	for {
		b := buffer{typ: d.outType(), memory: memoryMMAP, numPlanes: 1}
		ok, err := d.dqbuf(&b)
		must(x.t, err)
		if !ok {
			break
		}
		x.out[b.index].queued = false
	}
	for x.capOn {
		b := buffer{typ: d.capType(), memory: memoryMMAP, numPlanes: maxPlanes}
		ok, err := d.dqbuf(&b)
		must(x.t, err)
		if !ok {
			break
		}
		if b.flags&bufFlagError != 0 {
			x.t.Fatalf("decoder flagged picture %d as failed", len(x.pics))
		}
		if b.bytesused[0] > 0 {
			x.pics = append(x.pics, x.picture(x.cap[b.index].planes[0]))
		}
		x.queueCap(int(b.index))
	}
}

// picture copies the visible part of a decoded buffer (YUV420 or YUV422P, the planar
// formats vicodec decodes 4:2:0 and 4:2:2 streams to).
func (x *decoder) picture(buf []byte) picture {
	f := x.capFmt
	bpl, ah := int(f.BytesPerLine[0]), int(f.Height)
	p := picture{w: x.w, h: x.h, cw: x.w / 2, ch: x.h / 2}
	cah := ah / 2
	switch f.PixelFormat {
	case FourCCYUV420:
	case v4l2.MakeFourCC('4', '2', '2', 'P'):
		p.ch, cah = x.h, ah
	default:
		x.t.Fatalf("decoder CAPTURE format %v not handled", f.PixelFormat)
	}
	p.y = make([]byte, p.w*p.h)
	p.u = make([]byte, p.cw*p.ch)
	p.v = make([]byte, p.cw*p.ch)
	for r := range p.h {
		copy(p.y[r*p.w:(r+1)*p.w], buf[r*bpl:])
	}
	cb := bpl / 2
	uOff, vOff := bpl*ah, bpl*ah+cb*cah
	for r := range p.ch {
		copy(p.u[r*p.cw:(r+1)*p.cw], buf[uOff+r*cb:])
		copy(p.v[r*p.cw:(r+1)*p.cw], buf[vOff+r*cb:])
	}
	return p
}

// ---- one encode/decode run ----

type runResult struct {
	frames, encoded int
	keyframes       []uint64 // FrameSeq of keyframes
	bytes           int
	minPSNR         float64
	avgPSNR         float64
}

// encodeDecode encodes every frame, decodes every access unit and compares each decoded
// picture with the frame it came from (by FrameSeq).
func encodeDecode(t *testing.T, e *Encoder, dec *decoder, frames func(i int) (*media.Frame, func()), n int) runResult {
	t.Helper()
	refs := map[uint64]picture{}
	res := runResult{minPSNR: math.Inf(1)}
	var sum float64
	for i := range n {
		f, release := frames(i)
		refs[f.Seq] = planarOf(f)
		au, err := e.Encode(f)
		if release != nil {
			release()
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		res.frames++
		if len(au.Data) == 0 {
			continue
		}
		res.encoded++
		res.bytes += len(au.Data)
		if au.Keyframe {
			res.keyframes = append(res.keyframes, au.FrameSeq)
		}
		if au.FrameSeq != f.Seq || !au.CaptureTime.Equal(f.CaptureTime) {
			t.Errorf("frame %d: access unit carries FrameSeq %d CaptureTime %v; want %d %v", i, au.FrameSeq, au.CaptureTime, f.Seq, f.CaptureTime)
		}
		if h, ok := parseFWHT(au.Data); !ok || int(h.Width) != f.Width || int(h.Height) != f.Height {
			t.Errorf("frame %d: FWHT header %+v (ok %v); want a %dx%d picture", i, h, ok, f.Width, f.Height)
		}
		pic := dec.decode(au.Data)
		ref, ok := refs[au.FrameSeq]
		if !ok {
			t.Fatalf("access unit for unknown frame %d", au.FrameSeq)
		}
		p, err := psnr(ref, pic)
		if err != nil {
			t.Fatalf("frame %d: %v", au.FrameSeq, err)
		}
		sum += p
		res.minPSNR = min(res.minPSNR, p)
		delete(refs, au.FrameSeq)
	}
	if res.encoded > 0 {
		res.avgPSNR = sum / float64(res.encoded)
	}
	return res
}

func checkRun(t *testing.T, r runResult, n int) {
	t.Helper()
	t.Logf("%d frames in, %d access units out, %d decoded; %d bytes; PSNR min %.1f dB avg %.1f dB; keyframes at %v",
		r.frames, r.encoded, r.encoded, r.bytes, r.minPSNR, r.avgPSNR, r.keyframes)
	if r.frames != n || r.encoded != n {
		t.Errorf("%d frames fed, %d encoded and decoded; want %d", r.frames, r.encoded, n)
	}
	if r.minPSNR < minPSNR {
		t.Errorf("lowest PSNR %.1f dB; want > %.0f dB", r.minPSNR, minPSNR)
	}
	if len(r.keyframes) == 0 || r.keyframes[0] != 0 {
		t.Errorf("keyframes at %v; the first frame must be one", r.keyframes)
	}
}

// ---- vivid, raw: for the DMABUF fallback and the benchmark ----

type vivid struct {
	t     testing.TB
	d     *device
	fmt   format
	bufs  []slot
	fds   []int
	w, h  int
	seq   uint64
	start time.Time
}

// openVivid streams vivid's webcam as YU12 at w x h from MMAP buffers, each exported as a
// DMABUF (VIDIOC_EXPBUF).
func openVivid(t testing.TB, path string, w, h int) *vivid {
	return openVividAs(t, path, FourCCYUV420, w, h, nil)
}

// openVividAs streams vivid's webcam in pixel format fcc, after setting the given controls
// (vivid's test pattern, its on-screen text).
func openVividAs(t testing.TB, path string, fcc FourCC, w, h int, ctrls map[uint32]int64) *vivid {
	t.Helper()
	d, err := openDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	v := &vivid{t: t, d: d, w: w, h: h, start: time.Now()}
	t.Cleanup(v.close)
	for id, val := range ctrls {
		info, ok, err := d.queryControl(id)
		must(t, err)
		if !ok {
			t.Fatalf("vivid has no control 0x%08x", id)
		}
		must(t, d.setControl(id, info.typ, val))
	}
	v.fmt, err = d.setFormat(format{Type: d.capType(), PixelFormat: fcc, Width: uint32(w), Height: uint32(h), NumPlanes: 1})
	must(t, err)
	if v.fmt.PixelFormat != fcc || int(v.fmt.Width) != w || int(v.fmt.Height) != h {
		t.Skipf("vivid offers %v %dx%d for %v %dx%d", v.fmt.PixelFormat, v.fmt.Width, v.fmt.Height, fcc, w, h)
	}
	n, err := d.reqbufs(d.capType(), memoryMMAP, 4)
	must(t, err)
	for i := range n {
		b := buffer{typ: d.capType(), memory: memoryMMAP, index: uint32(i)}
		must(t, d.querybuf(&b))
		m, err := d.mmap(b.offset[0], b.length[0])
		must(t, err)
		fd, err := d.expbuf(d.capType(), i, 0)
		must(t, err)
		v.bufs = append(v.bufs, slot{planes: [][]byte{m}})
		v.fds = append(v.fds, fd)
		v.requeue(i)
	}
	must(t, d.stream(d.capType(), true))
	return v
}

func (v *vivid) requeue(i int) {
	b := buffer{typ: v.d.capType(), memory: memoryMMAP, index: uint32(i), numPlanes: 1}
	b.length[0] = uint32(len(v.bufs[i].planes[0]))
	must(v.t, v.d.qbuf(&b))
}

// next waits for vivid's next frame; the frame is valid until requeue(index).
func (v *vivid) next() (*media.Frame, int) {
	v.t.Helper()
	deadline := time.Now().Add(guestTimeout)
	for {
		b := buffer{typ: v.d.capType(), memory: memoryMMAP, numPlanes: 1}
		ok, err := v.d.dqbuf(&b)
		must(v.t, err)
		if ok {
			f := v.frameOf(int(b.index))
			f.CaptureTime = v.start.Add(time.Duration(v.seq) * time.Millisecond)
			v.seq++
			return f, int(b.index)
		}
		if time.Until(deadline) <= 0 {
			v.t.Fatal("vivid: no frame in time")
		}
		_, err = v.d.poll(time.Until(deadline))
		must(v.t, err)
	}
}

func (v *vivid) frameOf(i int) *media.Frame {
	m := v.bufs[i].planes[0]
	specs, err := rawPlanes(v.fmt, v.w, v.h)
	must(v.t, err)
	f := &media.Frame{Format: rawPixelFormat(v.fmt.PixelFormat), Width: v.w, Height: v.h, Seq: v.seq,
		DMABuf: &media.DMABuf{FD: v.fds[i], Length: len(m)}}
	for p, sp := range specs {
		f.Planes[p], f.Strides[p] = m[sp.offset:sp.offset+sp.stride*sp.rows], sp.stride
	}
	return f
}

func (v *vivid) close() {
	v.d.stream(v.d.capType(), false)
	for _, fd := range v.fds {
		unix.Close(fd)
	}
	for _, s := range v.bufs {
		unix.Munmap(s.planes[0])
	}
	v.bufs, v.fds = nil, nil
	v.d.close()
}

// ---- the tests ----

func TestVBoardEncodeDecodeMMAP(t *testing.T) {
	n := findNodes(t)
	checkAPI(t, n)
	for _, tc := range []struct {
		name   string
		w, h   int
		format media.PixelFormat
		frames int
	}{
		{"I420 640x480", 640, 480, media.PixelFormatI420, 30},
		{"NV12 640x480", 640, 480, media.PixelFormatNV12, 30},
		{"YUYV 640x480", 640, 480, media.PixelFormatYUYV, 30},
		{"I420 1280x720", 1280, 720, media.PixelFormatI420, 10},
		// 1080 rows in buffers vicodec aligns to 1088: the crop rectangle keeps the padding
		// out of the stream (the FWHT header says 1080, and the picture matches).
		{"I420 1920x1080 cropped", 1920, 1080, media.PixelFormatI420, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := openFWHT(t, n, tc.w, tc.h, tc.format, MemoryMMAP, nil)
			raw, bw, bh, convert, _ := e.OutputFormat()
			t.Logf("OUTPUT %v %dx%d (convert %v), synthetic test-pattern frames drawn as %v", raw, bw, bh, convert, tc.format)
			dec := newDecoder(t, n.decoder, tc.w, tc.h)
			src := newSynth(t, tc.w, tc.h, tc.format)
			r := encodeDecode(t, e, dec, func(i int) (*media.Frame, func()) { return src.frame(uint64(i)), nil }, tc.frames)
			checkRun(t, r, tc.frames)
			st := e.Stats()
			t.Logf("stats %+v", st)
			if st.Copies != uint64(tc.frames) || st.DMABufFrames != 0 {
				t.Errorf("MMAP path: %d copies and %d DMABUF imports for %d frames; want one copy each", st.Copies, st.DMABufFrames, tc.frames)
			}
		})
	}
	t.Run("vivid YU12 640x480", func(t *testing.T) {
		if n.vivid == "" {
			t.Skip("no vivid capture node")
		}
		e := openFWHT(t, n, 640, 480, media.PixelFormatI420, MemoryMMAP, nil)
		dec := newDecoder(t, n.decoder, 640, 480)
		cam := openVivid(t, n.vivid, 640, 480)
		r := encodeDecode(t, e, dec, func(int) (*media.Frame, func()) {
			f, i := cam.next()
			return f, func() { cam.requeue(i) }
		}, 15)
		checkRun(t, r, 15)
	})
}

// TestVBoardEncodeDecodeDMABUF feeds vivid's buffers to the encoder as imported DMABUFs:
// through device/camera (which exports each buffer with VIDIOC_EXPBUF) when it gives frames
// a DMABuf, else straight from vivid with raw ioctls. No CPU touches a frame on the way.
func TestVBoardEncodeDecodeDMABUF(t *testing.T) {
	n := findNodes(t)
	checkAPI(t, n)
	if n.vivid == "" {
		t.Skip("no vivid capture node")
	}
	const frames = 20
	for _, mem := range []Memory{MemoryDMABUF, MemoryAuto} {
		t.Run("camera package, memory "+mem.String(), func(t *testing.T) {
			log, _ := testLog(t)
			camLog := slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
			cam, err := camera.Open(camera.Config{Device: n.vivid, Format: "i420", Width: 640, Height: 480, FPS: 30}, camLog)
			if err != nil {
				t.Skipf("device/camera cannot open vivid: %v", err)
			}
			defer cam.Close()
			e := openFWHT(t, n, 640, 480, media.PixelFormatI420, mem, log)
			dec := newDecoder(t, n.decoder, 640, 480)
			type item struct {
				ref picture
				au  media.AccessUnit
				err error
			}
			var items []item
			noDMABuf := false
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = cam.Run(ctx, func(f *media.Frame) {
				if len(items) >= frames {
					cancel()
					return
				}
				if f.DMABuf == nil {
					noDMABuf = true
					cancel()
					return
				}
				ref := planarOf(f) // the test's own reference copy, not the encoder's
				au, err := e.Encode(f)
				au.Data = bytes.Clone(au.Data)
				items = append(items, item{ref, au, err})
			})
			if noDMABuf {
				t.Skip("device/camera gives frames without a DMABuf here")
			}
			if len(items) < frames {
				t.Fatalf("camera stopped after %d frames: %v", len(items), err)
			}
			r := runResult{frames: len(items), minPSNR: math.Inf(1)}
			var sum float64
			for i, it := range items {
				if it.err != nil {
					t.Fatalf("frame %d: %v", i, it.err)
				}
				if len(it.au.Data) == 0 {
					continue
				}
				r.encoded++
				r.bytes += len(it.au.Data)
				if it.au.Keyframe {
					r.keyframes = append(r.keyframes, uint64(i))
				}
				p, err := psnr(it.ref, dec.decode(it.au.Data))
				if err != nil {
					t.Fatal(err)
				}
				sum += p
				r.minPSNR = min(r.minPSNR, p)
			}
			r.avgPSNR = sum / float64(max(r.encoded, 1))
			checkRun(t, r, frames)
			st := e.Stats()
			t.Logf("stats %+v", st)
			if st.Copies != 0 || st.DMABufFrames != frames {
				t.Errorf("DMABUF path: %d copies, %d imports for %d frames; want 0 copies", st.Copies, st.DMABufFrames, frames)
			}
		})
	}
	t.Run("raw EXPBUF from vivid", func(t *testing.T) {
		e := openFWHT(t, n, 640, 480, media.PixelFormatI420, MemoryDMABUF, nil)
		dec := newDecoder(t, n.decoder, 640, 480)
		cam := openVivid(t, n.vivid, 640, 480)
		r := encodeDecode(t, e, dec, func(int) (*media.Frame, func()) {
			f, i := cam.next()
			return f, func() { cam.requeue(i) }
		}, frames)
		checkRun(t, r, frames)
		st := e.Stats()
		t.Logf("stats %+v", st)
		if st.Copies != 0 || st.DMABufFrames != frames {
			t.Errorf("DMABUF path: %d copies, %d imports for %d frames; want 0 copies", st.Copies, st.DMABufFrames, frames)
		}
	})
}

// TestVBoardDrain queues frames without waiting, drains (V4L2_ENC_CMD_STOP until the LAST
// buffer), checks every frame came out in order, and that V4L2_ENC_CMD_START resumed the
// encoder with its state: the next frame is still predicted, not a new keyframe.
func TestVBoardDrain(t *testing.T) {
	n := findNodes(t)
	e := openFWHT(t, n, 640, 480, media.PixelFormatI420, MemoryMMAP, nil)
	dec := newDecoder(t, n.decoder, 640, 480)
	src := newSynth(t, 640, 480, media.PixelFormatI420)
	refs := map[uint64]picture{}
	check := func(au media.AccessUnit) {
		t.Helper()
		p, err := psnr(refs[au.FrameSeq], dec.decode(au.Data))
		if err != nil || p < minPSNR {
			t.Errorf("frame %d: PSNR %.1f dB, %v", au.FrameSeq, p, err)
		}
	}
	for i := range 2 {
		f := src.frame(uint64(i))
		refs[f.Seq] = planarOf(f)
		au, err := e.Encode(f)
		must(t, err)
		check(au)
	}
	// Six frames in flight with four OUTPUT and four CAPTURE buffers: Submit recycles them.
	for i := 2; i < 8; i++ {
		f := src.frame(uint64(i))
		refs[f.Seq] = planarOf(f)
		must(t, e.Submit(f))
	}
	aus, err := e.Drain()
	must(t, err)
	var seqs []uint64
	for _, au := range aus {
		seqs = append(seqs, au.FrameSeq)
		check(au)
	}
	t.Logf("drained access units of frames %v", seqs)
	if !slices.Equal(seqs, []uint64{2, 3, 4, 5, 6, 7}) {
		t.Errorf("drain gave frames %v; want 2 to 7", seqs)
	}
	// Drained with nothing in flight: the LAST buffer comes back empty at once.
	if aus, err := e.Drain(); err != nil || len(aus) != 0 {
		t.Errorf("second drain: %d access units, %v; want none", len(aus), err)
	}
	f := src.frame(8)
	refs[f.Seq] = planarOf(f)
	au, err := e.Encode(f)
	must(t, err)
	if len(au.Data) == 0 || au.FrameSeq != 8 {
		t.Fatalf("after the drain: access unit of frame %d, %d bytes", au.FrameSeq, len(au.Data))
	}
	check(au)
	st := e.Stats()
	t.Logf("frame after V4L2_ENC_CMD_START: keyframe %v; stats %+v", au.Keyframe, st)
	switch {
	case st.Failures != 0:
		t.Errorf("stats %+v: a drain needs no reopen", st)
	case st.Resets == 0 && au.Keyframe:
		t.Error("the frame after V4L2_ENC_CMD_START is a keyframe though the encoder was not reset")
	case st.Resets > 0:
		// vicodec (Linux 6.1) leaves the CAPTURE queue in its last-buffer state after
		// START; the backend fell back to STREAMOFF/STREAMON of CAPTURE.
		t.Log("the driver did not resume on V4L2_ENC_CMD_START (DQBUF kept failing with EPIPE); CAPTURE was restarted")
		if !au.Keyframe {
			t.Error("after restarting CAPTURE the next frame should be a keyframe")
		}
	}
	for i := 9; i < 12; i++ {
		f := src.frame(uint64(i))
		refs[f.Seq] = planarOf(f)
		au, err := e.Encode(f)
		must(t, err)
		check(au)
	}
}

// TestVBoardForcedKeyframe: vicodec has no V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, so the
// backend forces the keyframe with the Reset sequence (STREAMOFF/STREAMON of CAPTURE); the
// stream stays decodable across it.
func TestVBoardForcedKeyframe(t *testing.T) {
	n := findNodes(t)
	log, logs := testLog(t)
	e := openFWHT(t, n, 640, 480, media.PixelFormatI420, MemoryMMAP, log)
	dec := newDecoder(t, n.decoder, 640, 480)
	src := newSynth(t, 640, 480, media.PixelFormatI420)
	var keys []uint64
	for i := range 12 {
		if i == 5 || i == 9 {
			e.RequestKeyframe()
		}
		f := src.frame(uint64(i))
		au, err := e.Encode(f)
		must(t, err)
		if au.Keyframe {
			keys = append(keys, au.FrameSeq)
		}
		if p, err := psnr(planarOf(f), dec.decode(au.Data)); err != nil || p < minPSNR {
			t.Errorf("frame %d: PSNR %.1f, %v", i, p, err)
		}
	}
	t.Logf("keyframes at %v; controls %+v; stats %+v", keys, e.Controls(), e.Stats())
	if !slices.Equal(keys, []uint64{0, 5, 9}) {
		t.Errorf("keyframes at %v; want [0 5 9] (first frame and the two requests)", keys)
	}
	if _, ok := e.s.ctrls[ctrlForceKeyFrame]; !ok {
		if st := e.Stats(); st.Resets != 2 {
			t.Errorf("%d resets for 2 requests without the force-keyframe control", st.Resets)
		}
		if c := logs.count("FORCE_KEY_FRAME"); c != 1 {
			t.Errorf("missing force-keyframe control logged %d times; want once", c)
		}
	}
}

// TestVBoardRuntimeBitrate: vicodec has no bitrate control, so SetBitrate succeeds, says
// once that the control is missing, and changes nothing. What vicodec does have is its QP
// and GOP controls: a coarser QP set while streaming shrinks the frames at once, and the GOP
// asked for (30 frames) is clamped to vicodec's maximum (16).
func TestVBoardRuntimeBitrate(t *testing.T) {
	n := findNodes(t)
	log, logs := testLog(t)
	e := openFWHT(t, n, 640, 480, media.PixelFormatI420, MemoryMMAP, log)
	dec := newDecoder(t, n.decoder, 640, 480)
	src := newSynth(t, 640, 480, media.PixelFormatI420)
	src.noise = rand.New(rand.NewPCG(1, 2)) // noise, so the quantizer shows in the size
	seq := uint64(0)
	var keys []uint64
	encode := func(frames int) (bytes int, minP float64) {
		minP = math.Inf(1)
		for range frames {
			f := src.frame(seq)
			seq++
			au, err := e.Encode(f)
			must(t, err)
			if au.Keyframe {
				keys = append(keys, au.FrameSeq)
			}
			bytes += len(au.Data)
			p, err := psnr(planarOf(f), dec.decode(au.Data))
			must(t, err)
			minP = min(minP, p)
		}
		return bytes, minP
	}
	before, p0 := encode(8)
	for _, bps := range []int{500_000, 1_000_000, 250_000} {
		if err := e.SetBitrate(bps); err != nil {
			t.Fatalf("SetBitrate(%d) on a driver without the control: %v", bps, err)
		}
	}
	same, _ := encode(8)
	if err := e.SetQP(31, 31); err != nil {
		t.Fatal(err)
	}
	coarse, p1 := encode(8)
	if err := e.SetQP(4, 4); err != nil {
		t.Fatal(err)
	}
	fine, p2 := encode(8)
	t.Logf("bytes per 8 frames: default QP %d (PSNR >= %.1f), after SetBitrate %d, QP 31 %d (PSNR >= %.1f), QP 4 %d (PSNR >= %.1f)",
		before, p0, same, coarse, p1, fine, p2)
	t.Logf("keyframes at %v; controls %+v", keys, e.Controls())
	if c := logs.count("encoder lacks a control"); c == 0 || logs.count(`control=bitrate `) != 1 {
		t.Errorf("missing bitrate control: logged %d times; want once", logs.count(`control=bitrate `))
	}
	if coarse*10 > before*9 {
		t.Errorf("QP 31 made %d bytes against %d at the default QP; want clearly fewer", coarse, before)
	}
	if fine <= coarse {
		t.Errorf("QP 4 made %d bytes, QP 31 %d; want more", fine, coarse)
	}
	if st := e.controls[ctrlGOPSize]; !st.Supported || st.Value != 16 {
		t.Errorf("GOP control %+v; want 16 (30 asked, clamped to vicodec's maximum)", st)
	}
	for i, k := range keys {
		if k != uint64(16*i) {
			t.Errorf("keyframes at %v; want every 16 frames", keys)
			break
		}
	}
}

// TestVBoardReopenAfterFailure breaks the encoder under the backend twice: its descriptor
// replaced by /dev/null (every ioctl fails: ENOTTY, as for a vanished node), and its CAPTURE
// queue stopped behind its back (the encoder wedges: nothing comes back). Each time the
// failing Encode returns within the timeout with the frame dropped, and the next Encode
// reopens the device and frames come out again, starting with a keyframe.
func TestVBoardReopenAfterFailure(t *testing.T) {
	n := findNodes(t)
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		inject func(t *testing.T, e *Encoder)
		want   error
	}{
		{"descriptor replaced", func(t *testing.T, e *Encoder) {
			null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
			must(t, err)
			must(t, unix.Dup2(null, e.s.dev.fd))
			unix.Close(null)
		}, unix.ENOTTY},
		{"CAPTURE stopped from outside", func(t *testing.T, e *Encoder) {
			must(t, e.s.dev.stream(e.s.dev.capType(), false))
		}, unix.EINVAL},
		{"CAPTURE starved: the device wedges", func(t *testing.T, e *Encoder) {
			// Restarted without its buffers: the encoder takes frames and never returns one.
			must(t, e.s.dev.stream(e.s.dev.capType(), false))
			must(t, e.s.dev.stream(e.s.dev.capType(), true))
		}, ErrWedged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testLog(t)
			e, err := New(encoder.Config{Width: 640, Height: 480, FPS: 30, BitrateBps: 1_000_000, KeyframeInterval: time.Second},
				Options{Device: n.encoder, CodedFormat: FourCCFWHT, InputFormat: media.PixelFormatI420, Timeout: timeout, Log: log})
			must(t, err)
			defer e.Close()
			src := newSynth(t, 640, 480, media.PixelFormatI420)
			for i := range 3 {
				if au, err := e.Encode(src.frame(uint64(i))); err != nil || len(au.Data) == 0 {
					t.Fatalf("frame %d before the failure: %v", i, err)
				}
			}
			tc.inject(t, e)
			t0 := time.Now()
			_, err = e.Encode(src.frame(3))
			took := time.Since(t0)
			t.Logf("Encode after the failure: %v after %v", err, took.Round(time.Millisecond))
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v; want one wrapping %v", err, tc.want)
			}
			if took > timeout+time.Second {
				t.Errorf("the failing Encode took %v; the timeout is %v", took, timeout)
			}
			dec := newDecoder(t, n.decoder, 640, 480)
			for i := 4; i < 10; i++ {
				f := src.frame(uint64(i))
				au, err := e.Encode(f)
				if err != nil {
					t.Fatalf("frame %d after the failure: %v", i, err)
				}
				if i == 4 && !au.Keyframe {
					t.Error("the first frame after the reopen is not a keyframe")
				}
				if p, err := psnr(planarOf(f), dec.decode(au.Data)); err != nil || p < minPSNR {
					t.Errorf("frame %d: PSNR %.1f, %v", i, p, err)
				}
			}
			st := e.Stats()
			t.Logf("stats %+v", st)
			if st.Failures != 1 || st.Reopens != 1 || st.Dropped != 1 || st.Encoded != 9 {
				t.Errorf("stats %+v; want 1 failure, 1 reopen, 1 dropped frame, 9 encoded", st)
			}
		})
	}
	t.Run("device keeps failing", func(t *testing.T) {
		// A device that cannot be opened again: frames are dropped quickly with backoff, and
		// Encode never blocks.
		log, _ := testLog(t)
		e, err := New(encoder.Config{Width: 640, Height: 480, FPS: 30, BitrateBps: 1_000_000},
			Options{Device: n.encoder, CodedFormat: FourCCFWHT, Timeout: timeout, Log: log})
		must(t, err)
		defer e.Close()
		src := newSynth(t, 640, 480, media.PixelFormatI420)
		_, err = e.Encode(src.frame(0))
		must(t, err)
		e.opts.Device = "/dev/video-gone"
		e.s.dev.stream(e.s.dev.capType(), false)
		var errs []string
		var last error
		t0 := time.Now()
		for i := 1; i < 8; i++ {
			_, last = e.Encode(src.frame(uint64(i)))
			if last == nil {
				t.Fatalf("frame %d encoded by a device that is gone", i)
			}
			errs = append(errs, last.Error())
		}
		t.Logf("7 frames in %v:\n%s", time.Since(t0).Round(time.Millisecond), strings.Join(errs, "\n"))
		if time.Since(t0) > timeout+2*time.Second {
			t.Errorf("dropping 7 frames took %v", time.Since(t0))
		}
		if !errors.Is(last, ErrReopening) {
			t.Errorf("last error %v; want one wrapping ErrReopening (frames dropped during the backoff)", last)
		}
		if st := e.Stats(); st.Dropped != 7 {
			t.Errorf("stats %+v; want 7 dropped frames", st)
		}
	})
}

// TestVBoardInputChanges: frames in another layout than the encoder was opened for make it
// reopen with the new layout once (a new stream, starting with a keyframe), not fail.
func TestVBoardInputChanges(t *testing.T) {
	n := findNodes(t)
	log, logs := testLog(t)
	e := openFWHT(t, n, 640, 480, media.PixelFormatNV12, MemoryAuto, log)
	dec := newDecoder(t, n.decoder, 640, 480)
	nv12, i420 := newSynth(t, 640, 480, media.PixelFormatNV12), newSynth(t, 640, 480, media.PixelFormatI420)
	var keys []uint64
	for i := range 6 {
		f := nv12.frame(uint64(i))
		if i >= 3 {
			f = i420.frame(uint64(i))
		}
		au, err := e.Encode(f)
		must(t, err)
		if au.Keyframe {
			keys = append(keys, au.FrameSeq)
		}
		if p, err := psnr(planarOf(f), dec.decode(au.Data)); err != nil || p < minPSNR {
			t.Errorf("frame %d: PSNR %.1f, %v", i, p, err)
		}
	}
	raw, _, _, _, _ := e.OutputFormat()
	t.Logf("keyframes at %v, OUTPUT now %v, stats %+v", keys, raw, e.Stats())
	if raw != FourCCYUV420 || logs.count("reopening the encoder") != 1 || !slices.Equal(keys, []uint64{0, 3}) {
		t.Errorf("OUTPUT %v after I420 frames, %d reopens logged, keyframes %v; want YU12, 1, [0 3]", raw, logs.count("reopening the encoder"), keys)
	}
	if st := e.Stats(); st.Failures != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v: a layout change is not a failure", st)
	}
}

// TestVBoardRejectsMissingCodedFormat: asked for H.264, vicodec's encoder is refused with
// the reason, which is what makes the daemon fall back to software.
func TestVBoardRejectsMissingCodedFormat(t *testing.T) {
	n := findNodes(t)
	_, err := New(encoder.Config{Width: 640, Height: 480, FPS: 30, BitrateBps: 1_000_000}, Options{Device: n.encoder})
	t.Logf("H.264 from vicodec: %v", err)
	if err == nil || !strings.Contains(err.Error(), "not H264") {
		t.Errorf("error %v; want one saying the device does not produce H264", err)
	}
}

// ---- benchmark ----

type benchRow struct {
	name             string
	frames           int
	fps              float64
	p50, p99         time.Duration
	copiesPerFrame   float64
	importsPerFrame  float64
	cpuPerFrame      time.Duration
	bytesPerFrameAvg int
}

// benchFrames encodes frames from next for the given time (at least minFrames) and measures
// each Encode.
func benchFrames(t testing.TB, e *Encoder, next func(i int) *media.Frame, d time.Duration, minFrames int) benchRow {
	var lat []time.Duration
	bytes := 0
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	for i := 0; time.Since(t0) < d || i < minFrames; i++ {
		f := next(i)
		s := time.Now()
		au, err := e.Encode(f)
		lat = append(lat, time.Since(s))
		if err != nil {
			t.Fatal(err)
		}
		bytes += len(au.Data)
	}
	el := time.Since(t0)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / time.Duration(len(lat))
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	st := e.Stats()
	return benchRow{frames: len(lat), fps: float64(len(lat)) / el.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		copiesPerFrame: float64(st.Copies) / float64(st.Frames), importsPerFrame: float64(st.DMABufFrames) / float64(st.Frames),
		cpuPerFrame: cpu, bytesPerFrameAvg: bytes / len(lat)}
}

// TestVBoardBenchmark prints frames per second, per-frame latency and CPU copies for the
// MMAP and DMABUF paths at 640x480 and 1280x720. The frames are vivid's buffers, dequeued
// once and then fed over and over (so the camera's pace does not limit the figures): MMAP
// copies them in, DMABUF imports them. Under TCG the absolute numbers say little about a
// board; the copies column and the difference between the two paths are what carry over.
func TestVBoardBenchmark(t *testing.T) {
	n := findNodes(t)
	checkAPI(t, n)
	dur := 3 * time.Second
	var rows []benchRow
	for _, size := range [][2]int{{640, 480}, {1280, 720}} {
		rows = append(rows, benchSize(t, n, size[0], size[1], dur)...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-42s %7s %8s %9s %9s %9s %12s %10s %9s\n", "v4l2m2m (vicodec FWHT, TCG guest)", "frames", "fps", "p50", "p99", "cpu/frame", "copies/frame", "dmabuf/fr", "bytes/fr")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-42s %7d %8.1f %9s %9s %9s %12.2f %10.2f %9d\n", r.name, r.frames, r.fps,
			r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.cpuPerFrame.Round(10*time.Microsecond),
			r.copiesPerFrame, r.importsPerFrame, r.bytesPerFrameAvg)
	}
	t.Log(b.String())
	for _, r := range rows {
		if strings.Contains(r.name, "dmabuf") && r.copiesPerFrame != 0 {
			t.Errorf("%s: %.2f copies per frame; want 0", r.name, r.copiesPerFrame)
		}
		if strings.Contains(r.name, "mmap") && r.copiesPerFrame != 1 {
			t.Errorf("%s: %.2f copies per frame; want 1", r.name, r.copiesPerFrame)
		}
	}
}

// benchSize measures both OUTPUT memory kinds at one size.
func benchSize(t *testing.T, n nodes, w, h int, dur time.Duration) []benchRow {
	var rows []benchRow
	var frames []*media.Frame
	source := "test pattern"
	if n.vivid != "" {
		cam := openVivid(t, n.vivid, w, h)
		for range len(cam.bufs) {
			f, _ := cam.next() // kept dequeued: ours until the end of this size
			frames = append(frames, f)
		}
		source = "vivid buffers"
		defer cam.close()
	}
	for _, mem := range []Memory{MemoryMMAP, MemoryDMABUF} {
		name := fmt.Sprintf("%dx%d %s (%s)", w, h, mem, source)
		if mem == MemoryDMABUF && len(frames) == 0 {
			t.Logf("%s: skipped, no vivid to export buffers from", name)
			continue
		}
		e := openFWHT(t, n, w, h, media.PixelFormatI420, mem, slog.New(slog.DiscardHandler))
		src := newSynth(t, w, h, media.PixelFormatI420)
		next := func(i int) *media.Frame {
			if len(frames) == 0 {
				return src.frame(uint64(i))
			}
			f := *frames[i%len(frames)]
			f.Seq = uint64(i)
			if mem == MemoryMMAP {
				f.DMABuf = nil
			}
			return &f
		}
		benchFrames(t, e, next, 0, 3) // warm up: allocation and the first keyframe
		e.stats = Stats{}
		r := benchFrames(t, e, next, dur, 10)
		r.name = name
		rows = append(rows, r)
		e.Close()
	}
	return rows
}

// BenchmarkEncode is the Go benchmark form, MMAP from the test pattern, for -test.bench in
// the guest.
func BenchmarkEncode(b *testing.B) {
	n := findNodes(b)
	for _, size := range [][2]int{{640, 480}, {1280, 720}} {
		b.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(b *testing.B) {
			e := openFWHT(b, n, size[0], size[1], media.PixelFormatI420, MemoryMMAP, slog.New(slog.DiscardHandler))
			src := newSynth(b, size[0], size[1], media.PixelFormatI420)
			frames := []*media.Frame{src.frame(0), src.frame(1), src.frame(2)}
			b.ResetTimer()
			t0 := time.Now()
			for i := 0; b.Loop(); i++ {
				f := *frames[i%3]
				f.Seq = uint64(i)
				if _, err := e.Encode(&f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "frames/s")
			st := e.Stats()
			b.ReportMetric(float64(st.Copies)/float64(max(st.Frames, 1)), "copies/frame")
		})
	}
}
