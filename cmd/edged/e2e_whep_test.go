//go:build e2e && cgo

package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/internal/h264"
	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/whepclient"
)

// TestE2EWHEPFramesDecodeInOrder receives the camera through WHEP for 10 s, decodes the H.264
// with ffmpeg and reads the frame number drawn into each picture back: at least 90 % of the
// frames the camera produced while the viewer watched must arrive, in order.
func TestE2EWHEPFramesDecodeInOrder(t *testing.T) {
	leakcheck.Check(t)
	const w, h, fps, watch = 1280, 720, 30, 10 * time.Second
	d := startDaemon(t, fmt.Sprintf("EDGED_CAMERA_WIDTH=%d", w), fmt.Sprintf("EDGED_CAMERA_HEIGHT=%d", h),
		fmt.Sprintf("EDGED_CAMERA_FPS=%d", fps))

	var mu sync.Mutex
	var stream bytes.Buffer // the depacketized Annex-B byte stream, as a decoder gets it
	var depack codecs.H264Packet
	var packets, lost int
	var lastSeq uint16
	ctx, cancel := context.WithTimeout(context.Background(), watch+10*time.Second)
	defer cancel()
	c, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true},
		func(p *rtp.Packet) {
			mu.Lock()
			defer mu.Unlock()
			if packets > 0 && p.SequenceNumber != lastSeq+1 {
				lost += int(p.SequenceNumber - lastSeq - 1)
			}
			packets++
			lastSeq = p.SequenceNumber
			if nal, err := depack.Unmarshal(p.Payload); err == nil {
				stream.Write(nal)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(watch)
	watchEnd := time.Now()
	c.Close()
	mu.Lock()
	annexB := bytes.Clone(stream.Bytes())
	mu.Unlock()
	t.Logf("received %d RTP packets (%d lost), %d bytes of H.264", packets, lost, len(annexB))

	checkBrowserRules(t, annexB, w, h)

	frames := decodeWithFFmpeg(t, annexB, w, h)
	var seqs []uint64
	var latency []time.Duration
	for i, y := range frames {
		seq, captured, err := testpattern.Decode(y, w, w, h)
		if err != nil {
			t.Errorf("decoded picture %d: frame number unreadable: %v", i, err)
			continue
		}
		seqs = append(seqs, seq)
		latency = append(latency, watchEnd.Sub(captured))
	}
	if len(seqs) < 2 {
		t.Fatalf("only %d readable pictures decoded", len(seqs))
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("pictures out of order: frame %d after frame %d", seqs[i], seqs[i-1])
		}
	}
	produced := seqs[len(seqs)-1] - seqs[0] + 1
	ratio := float64(len(seqs)) / float64(produced)
	t.Logf("decoded %d pictures, frames %d..%d: %d produced in that span, %.1f %% arrived",
		len(seqs), seqs[0], seqs[len(seqs)-1], produced, 100*ratio)
	if ratio < 0.9 {
		t.Errorf("%.1f %% of produced frames arrived; want at least 90 %%", 100*ratio)
	}
	// The span itself must cover the watch: a stream that stalled early would pass the ratio.
	if minFrames := uint64(0.9 * fps * watch.Seconds() * 0.9); produced < minFrames {
		t.Errorf("only %d frames produced during %v at %d fps; want at least %d", produced, watch, fps, minFrames)
	}
	if newest := slices.Min(latency); newest > 2*time.Second {
		t.Errorf("the newest picture received was captured %v before the viewer stopped: the stream lags", newest)
	}
}

// checkBrowserRules asserts what browsers need: constrained baseline at the configured size,
// and SPS and PPS in front of every IDR.
func checkBrowserRules(t *testing.T, annexB []byte, w, h int) {
	t.Helper()
	var sawSPS, sawPPS bool
	idrs := 0
	var prev h264.NALType
	for _, nal := range h264.SplitAnnexB(annexB) {
		switch ty := h264.Type(nal); ty {
		case h264.NALSPS:
			sps, err := h264.ParseSPS(nal)
			if err != nil {
				t.Fatalf("SPS: %v", err)
			}
			if !sps.ConstrainedBaseline() || sps.Width != w || sps.Height != h {
				t.Fatalf("SPS: profile-level-id %s, %dx%d; want constrained baseline %dx%d", sps.ProfileLevelID(), sps.Width, sps.Height, w, h)
			}
			sawSPS, sawPPS = true, false
		case h264.NALPPS:
			sawPPS = sawSPS
		case h264.NALIDR:
			if prev != h264.NALIDR { // first slice of an IDR picture
				idrs++
				if !sawSPS || !sawPPS {
					t.Fatalf("IDR picture %d without SPS and PPS in front of it", idrs)
				}
			}
		case h264.NALSlice:
			sawSPS, sawPPS = false, false
		}
		prev = h264.Type(nal)
	}
	if idrs < 2 {
		t.Errorf("%d IDR pictures in the session; want the first and at least one periodic one", idrs)
	}
}

// decodeWithFFmpeg decodes an Annex-B stream and returns each picture's luma plane.
func decodeWithFFmpeg(t *testing.T, annexB []byte, w, h int) [][]byte {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg is needed to decode the stream (make test installs it): ", err)
	}
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "h264", "-i", "pipe:0",
		"-f", "rawvideo", "-pix_fmt", "gray", "-fps_mode", "passthrough", "pipe:1")
	cmd.Stdin = bytes.NewReader(annexB)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, errOut.String())
	}
	if errOut.Len() > 0 {
		t.Logf("ffmpeg said: %s", errOut.String())
	}
	var frames [][]byte
	for b := out.Bytes(); len(b) >= w*h; b = b[w*h:] {
		frames = append(frames, b[:w*h])
	}
	return frames
}

// TestE2EPrivacyMuteSendsNoCameraPicture watches 9 s of stream with privacy mute switched on
// for the middle 3 s through the API, decodes everything and checks the viewer got camera
// pictures, then only black ones, then camera pictures again.
func TestE2EPrivacyMuteSendsNoCameraPicture(t *testing.T) {
	const w, h = 640, 480
	d := startDaemon(t, fmt.Sprintf("EDGED_CAMERA_WIDTH=%d", w), fmt.Sprintf("EDGED_CAMERA_HEIGHT=%d", h))
	var mu sync.Mutex
	var stream bytes.Buffer
	var depack codecs.H264Packet
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true},
		func(p *rtp.Packet) {
			mu.Lock()
			defer mu.Unlock()
			if nal, err := depack.Unmarshal(p.Payload); err == nil {
				stream.Write(nal)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(3 * time.Second)
	d.post(t, "/api/privacy", `{"on": true}`)
	time.Sleep(3 * time.Second)
	d.post(t, "/api/privacy", `{"on": false}`)
	time.Sleep(3 * time.Second)
	mu.Lock()
	annexB := bytes.Clone(stream.Bytes())
	mu.Unlock()

	// Each decoded picture is camera (barcode readable), black, or neither (the one frame in
	// which the switch happens may be either).
	var phases []string
	var blackFrames int
	for _, y := range decodeWithFFmpeg(t, annexB, w, h) {
		kind := "other"
		if _, _, err := testpattern.Decode(y, w, w, h); err == nil {
			kind = "camera"
		} else if meanLuma(y) < 24 {
			kind, blackFrames = "black", blackFrames+1
		}
		if len(phases) == 0 || phases[len(phases)-1] != kind {
			phases = append(phases, kind)
		}
	}
	t.Logf("phases %v, %d black pictures", phases, blackFrames)
	if got := fmt.Sprint(phases); got != "[camera black camera]" {
		t.Errorf("picture sequence %s; want [camera black camera]", got)
	}
	if blackFrames < 60 || blackFrames > 120 {
		t.Errorf("%d black pictures for 3 s of mute at 30 fps", blackFrames)
	}
}

func meanLuma(y []byte) float64 {
	var sum int
	for _, v := range y {
		sum += int(v)
	}
	return float64(sum) / float64(len(y))
}
