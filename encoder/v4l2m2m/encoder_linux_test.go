//go:build linux && cgo

package v4l2m2m

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/internal/h264"
	"github.com/edgeflux/edge/internal/media"
)

// These tests drive the part of Encoder that turns dequeued CAPTURE data into access units,
// which needs no device: header-only buffers, the SPS/PPS guard, timestamp matching.

func testEncoder(codec FourCC) (*Encoder, *session) {
	e := &Encoder{codec: codec, log: slog.New(slog.DiscardHandler), warned: map[string]bool{}, controls: map[control]ControlStatus{}}
	s := &session{pending: map[uint64]pendingFrame{}}
	return e, s
}

func TestEmitH264(t *testing.T) {
	e, s := testEncoder(FourCCH264)
	t0 := time.Unix(1700000000, 0)
	for id := uint64(1); id <= 6; id++ {
		s.pending[id] = pendingFrame{seq: 100 + id, at: t0.Add(time.Duration(id) * time.Millisecond)}
	}
	// A driver that sends the parameter sets in a buffer of their own, then the IDR.
	e.emit(s, 1, 0, cat(nalSPS, nalPPS))
	if len(e.ready) != 0 {
		t.Fatal("a header-only buffer became an access unit")
	}
	e.emit(s, 1, bufFlagKeyframe, nalIDR)
	e.emit(s, 2, 0, nalSlice)
	// The encoder skipped frame 3; frame 4 is an IDR without parameter sets in-band.
	e.emit(s, 4, bufFlagKeyframe, nalIDR)
	// A timestamp the driver did not carry over goes to the oldest frame still pending.
	e.emit(s, 999, 0, nalSlice)

	want := []struct {
		seq  uint64
		key  bool
		data []byte
	}{
		{101, true, cat(nalSPS, nalPPS, nalIDR)},
		{102, false, nalSlice},
		{104, true, cat(nalSPS, nalPPS, nalIDR)},
		{105, false, nalSlice},
	}
	if len(e.ready) != len(want) {
		t.Fatalf("%d access units; want %d", len(e.ready), len(want))
	}
	for i, w := range want {
		au := e.pop()
		if au.FrameSeq != w.seq || au.Keyframe != w.key || !bytes.Equal(au.Data, w.data) {
			t.Errorf("access unit %d: seq %d key %v % x; want seq %d key %v % x", i, au.FrameSeq, au.Keyframe, au.Data, w.seq, w.key, w.data)
		}
		if !au.CaptureTime.Equal(t0.Add(time.Duration(w.seq-100) * time.Millisecond)) {
			t.Errorf("access unit %d: capture time %v", i, au.CaptureTime)
		}
		if au.Keyframe {
			var types []h264.NALType
			for _, nal := range h264.SplitAnnexB(au.Data) {
				types = append(types, h264.Type(nal))
			}
			if len(types) < 3 || types[0] != h264.NALSPS || types[1] != h264.NALPPS {
				t.Errorf("keyframe %d NAL types %v; want SPS and PPS first", i, types)
			}
		}
	}
	if _, still := s.pending[3]; still {
		t.Error("frame 3, skipped by the encoder, is still pending")
	}
	if len(s.pending) != 1 {
		t.Errorf("pending %v; want only frame 6", s.pending)
	}
	if au := e.pop(); len(au.Data) != 0 {
		t.Errorf("pop on an empty queue gave %d bytes", len(au.Data))
	}
	if e.stats.Encoded != 4 {
		t.Errorf("Encoded %d; want 4", e.stats.Encoded)
	}
}

func TestEmitFWHT(t *testing.T) {
	e, s := testEncoder(FourCCFWHT)
	s.pending[1] = pendingFrame{seq: 0}
	s.pending[2] = pendingFrame{seq: 1}
	s.pending[3] = pendingFrame{seq: 2}
	e.emit(s, 1, 0, fwhtFrame(fwhtFlagIFrame))
	e.emit(s, 2, 0, fwhtFrame(0))
	e.emit(s, 3, bufFlagKeyframe, fwhtFrame(0)) // the driver's flag counts for non-H.264 formats
	for i, key := range []bool{true, false, true} {
		if au := e.pop(); au.Keyframe != key || au.FrameSeq != uint64(i) {
			t.Errorf("access unit %d: keyframe %v seq %d; want %v %d", i, au.Keyframe, au.FrameSeq, key, i)
		}
	}
}

func TestPopKeepsDataUntilNextCall(t *testing.T) {
	e, s := testEncoder(FourCCFWHT)
	for id := uint64(1); id <= 3; id++ {
		s.pending[id] = pendingFrame{seq: id}
		e.emit(s, id, 0, fwhtFrame(uint32(id)))
	}
	a := e.pop()
	keep := bytes.Clone(a.Data)
	b := e.pop()
	if !bytes.Equal(b.Data, fwhtFrame(2)) || !bytes.Equal(keep, fwhtFrame(1)) {
		t.Error("access units mixed up")
	}
	// a's buffer is recycled once b was returned, for the next emit.
	s.pending[4] = pendingFrame{seq: 4}
	e.emit(s, 4, 0, fwhtFrame(4))
	if len(e.spare) != 0 {
		t.Errorf("%d spare buffers; the recycled one should have been reused", len(e.spare))
	}
}

func TestNewValidates(t *testing.T) {
	good := encoder.Config{Width: 640, Height: 480, FPS: 30, BitrateBps: 1}
	for _, tc := range []struct {
		name string
		cfg  encoder.Config
		opts Options
	}{
		{"zero width", encoder.Config{Height: 480, FPS: 30, BitrateBps: 1}, Options{Device: "/dev/null"}},
		{"no device", good, Options{}},
		{"not a V4L2 node", good, Options{Device: "/dev/null"}},
		{"missing node", good, Options{Device: "/dev/video-none"}},
	} {
		if _, err := New(tc.cfg, tc.opts); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestSubmitRefusesWrongSize(t *testing.T) {
	e, _ := testEncoder(FourCCFWHT)
	e.cfg = encoder.Config{Width: 640, Height: 480}
	if _, err := e.Encode(&media.Frame{Width: 320, Height: 240}); err == nil {
		t.Error("a frame of another size was accepted")
	}
	e.closed = true
	if _, err := e.Encode(&media.Frame{Width: 640, Height: 480}); err == nil {
		t.Error("a closed encoder encoded")
	}
	e.closed = false
	e.retryAt = time.Now().Add(time.Hour)
	if _, err := e.Encode(&media.Frame{Width: 640, Height: 480}); !errors.Is(err, ErrReopening) || e.stats.Dropped != 1 {
		t.Errorf("while waiting to reopen: %v, %d dropped; want ErrReopening and one drop", err, e.stats.Dropped)
	}
}
