package edge

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// recordingWriter keeps what a viewer was sent. Until ready, it drops packets the way pion
// does before SRTP is up: 0 bytes, no error.
type recordingWriter struct {
	pkts     []rtp.Packet
	notReady bool
}

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if w.notReady {
		return 0, nil
	}
	w.pkts = append(w.pkts, rtp.Packet{Header: *h, Payload: bytes.Clone(payload)})
	return len(payload), nil
}
func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), nil }

type recordingBinding struct {
	fakeBinding
	w *recordingWriter
}

func (b recordingBinding) WriteStream() webrtc.TrackLocalWriter { return b.w }

func bindRecorder(t *testing.T, track *Track) (*downTrack, *recordingWriter) {
	t.Helper()
	w := &recordingWriter{}
	d := newDownTrack(track)
	if _, err := d.Bind(recordingBinding{fakeBinding{ssrc: 1234}, w}); err != nil {
		t.Fatal(err)
	}
	return d, w
}

func TestDownTrackStartsOnKeyframeAndRenumbers(t *testing.T) {
	requests := 0
	track := NewTrack("camera", "test", func() { requests++ })
	d, w := bindRecorder(t, track)
	if requests != 0 {
		t.Errorf("binding a viewer made %d keyframe requests; want none before it is connected", requests)
	}
	d.connected()
	if requests != 1 {
		t.Errorf("a connected viewer made %d keyframe requests; want 1", requests)
	}
	track.WriteAccessUnit(fakeAU(0, false, 3000)) // before any keyframe: not sent
	if len(w.pkts) != 0 {
		t.Fatalf("%d packets sent before the first keyframe", len(w.pkts))
	}
	track.WriteAccessUnit(fakeAU(1, true, 3000))
	track.WriteAccessUnit(fakeAU(2, false, 3000))
	if len(w.pkts) < 4 {
		t.Fatalf("only %d packets for two pictures", len(w.pkts))
	}
	var markers int
	for i, p := range w.pkts {
		if p.SSRC != 1234 || p.PayloadType != 102 {
			t.Errorf("packet %d: SSRC %d PT %d; want the viewer's 1234 and 102", i, p.SSRC, p.PayloadType)
		}
		if i > 0 && p.SequenceNumber != w.pkts[i-1].SequenceNumber+1 {
			t.Errorf("packet %d: sequence %d after %d", i, p.SequenceNumber, w.pkts[i-1].SequenceNumber)
		}
		if p.Marker {
			markers++
		}
	}
	if markers != 2 || !w.pkts[len(w.pkts)-1].Marker {
		t.Errorf("%d marker bits for two pictures, last packet marker %v", markers, w.pkts[len(w.pkts)-1].Marker)
	}
}

func TestNACKIsAnsweredFromTheSharedRing(t *testing.T) {
	track := NewTrack("camera", "test", func() {})
	d, w := bindRecorder(t, track)
	track.WriteAccessUnit(fakeAU(0, true, 5000))
	sent := len(w.pkts)
	lost := w.pkts[2]

	nacked, resent := d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		Nacks: []rtcp.NackPair{{PacketID: lost.SequenceNumber}, {PacketID: lost.SequenceNumber + 1000}},
	}})
	if nacked != 2 || resent != 1 || len(w.pkts) != sent+1 {
		t.Fatalf("NACK for one sent and one never-sent packet: nacked %d resent %d (%d new packets); want 2, 1, 1",
			nacked, resent, len(w.pkts)-sent)
	}
	again := w.pkts[sent]
	if again.SequenceNumber != lost.SequenceNumber || again.Timestamp != lost.Timestamp || !bytes.Equal(again.Payload, lost.Payload) {
		t.Errorf("retransmission differs from the original: seq %d/%d ts %d/%d", again.SequenceNumber, lost.SequenceNumber, again.Timestamp, lost.Timestamp)
	}

	// Once the ring has wrapped, the packet is gone and is not resent stale.
	for i := range uint64(ringSize) {
		track.WriteAccessUnit(fakeAU(i+1, false, 100))
	}
	if _, resent := d.handleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: lost.SequenceNumber}}}}); resent != 0 {
		t.Error("a packet older than the ring was resent")
	}
}

func TestUnbindStopsForwarding(t *testing.T) {
	track := NewTrack("camera", "test", func() {})
	d, w := bindRecorder(t, track)
	track.WriteAccessUnit(fakeAU(0, true, 100))
	if err := d.Unbind(nil); err != nil {
		t.Fatal(err)
	}
	n := len(w.pkts)
	track.WriteAccessUnit(fakeAU(1, true, 100))
	if len(w.pkts) != n || track.Subscribers() != 0 {
		t.Errorf("after Unbind: %d more packets, %d subscribers", len(w.pkts)-n, track.Subscribers())
	}
}

func TestCaptureToRTPLatencyIsRecorded(t *testing.T) {
	track := NewTrack("camera", "test", func() {})
	au := fakeAU(0, true, 100)
	au.CaptureTime = time.Now().Add(-20 * time.Millisecond)
	track.WriteAccessUnit(au)
	if l := track.CaptureToRTP(); l.Samples != 1 || l.P50 < 20*time.Millisecond || l.P50 > time.Second {
		t.Errorf("latency %+v; want one sample of about 20 ms", l)
	}
}

// TestKeyframeDroppedBeforeSRTPIsNotAStart: a keyframe pion dropped because the viewer's
// SRTP was not up yet must not count as the viewer's start; another one is requested.
func TestKeyframeDroppedBeforeSRTPIsNotAStart(t *testing.T) {
	requests := 0
	track := NewTrack("camera", "test", func() { requests++ })
	_, w := bindRecorder(t, track)
	w.notReady = true
	track.WriteAccessUnit(fakeAU(0, true, 3000))
	if requests != 1 {
		t.Errorf("%d keyframe requests after the start keyframe was dropped; want 1", requests)
	}
	w.notReady = false
	track.WriteAccessUnit(fakeAU(1, false, 3000))
	if len(w.pkts) != 0 {
		t.Fatalf("%d packets of a delta frame sent to a viewer that never got a keyframe", len(w.pkts))
	}
	track.WriteAccessUnit(fakeAU(2, true, 3000))
	if len(w.pkts) == 0 {
		t.Fatal("the keyframe after SRTP came up did not start the viewer")
	}
}
