package sfu

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/media"
)

var testH264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
	SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}

// testTrack is a camera-like H.264 track with one layer.
func testTrack(onKey func(*Layer)) (*Track, *Layer) {
	t := NewTrack(TrackInfo{ID: "cam", Kind: webrtc.RTPCodecTypeVideo, Source: "camera", Codec: testH264}, "camera", onKey, nil)
	return t, t.AddLayer("", High, 1280, 720)
}

// fakeAU is an Annex-B access unit whose slice carries its frame number as text.
func fakeAU(seq uint64, keyframe bool, size int) media.AccessUnit {
	body := fmt.Appendf(nil, "frame=%010d", seq)
	for len(body) < size {
		body = append(body, 0xa5)
	}
	var b []byte
	nal := byte(0x41)
	if keyframe {
		b = append(b, 0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80)
		nal = 0x65
	}
	b = append(append(b, 0, 0, 0, 1, nal), body...)
	return media.AccessUnit{Data: b, Keyframe: keyframe, FrameSeq: seq, CaptureTime: time.Now()}
}

// recordingWriter keeps what a subscriber was sent. Until ready, it drops packets the way
// pion does before SRTP is up: 0 bytes, no error.
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

func bindRecorder(t *testing.T, track *Track) (*DownTrack, *recordingWriter) {
	t.Helper()
	w := &recordingWriter{}
	d := NewDownTrack(track, "viewer", nil)
	if _, err := d.Bind(recordingBinding{fakeBinding{ssrc: 1234}, w}); err != nil {
		t.Fatal(err)
	}
	return d, w
}

// checkContiguous fails unless the packets are numbered one after another on one SSRC and
// payload type, with timestamps that never go back.
func checkContiguous(t *testing.T, pkts []rtp.Packet) {
	t.Helper()
	for i, p := range pkts {
		if p.SSRC != 1234 || p.PayloadType != 102 {
			t.Fatalf("packet %d: SSRC %d PT %d; want the subscriber's 1234 and 102", i, p.SSRC, p.PayloadType)
		}
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, p.SequenceNumber, pkts[i-1].SequenceNumber)
		}
		if i > 0 && int32(p.Timestamp-pkts[i-1].Timestamp) < 0 {
			t.Fatalf("packet %d: timestamp %d went back from %d", i, p.Timestamp, pkts[i-1].Timestamp)
		}
	}
}

func TestDownTrackStartsOnKeyframeAndRenumbers(t *testing.T) {
	var requests atomic.Int32
	track, layer := testTrack(func(*Layer) { requests.Add(1) })
	_, w := bindRecorder(t, track)
	layer.WriteAccessUnit(fakeAU(0, false, 3000)) // before any keyframe: not sent
	if len(w.pkts) != 0 {
		t.Fatalf("%d packets sent before the first keyframe", len(w.pkts))
	}
	if requests.Load() != 1 {
		t.Errorf("a new subscriber made %d keyframe requests; want 1", requests.Load())
	}
	layer.WriteAccessUnit(fakeAU(1, true, 3000))
	layer.WriteAccessUnit(fakeAU(2, false, 3000))
	if len(w.pkts) < 4 {
		t.Fatalf("only %d packets for two pictures", len(w.pkts))
	}
	checkContiguous(t, w.pkts)
	markers := 0
	for _, p := range w.pkts {
		if p.Marker {
			markers++
		}
	}
	if markers != 2 || !w.pkts[len(w.pkts)-1].Marker {
		t.Errorf("%d marker bits for two pictures, last packet marker %v", markers, w.pkts[len(w.pkts)-1].Marker)
	}
}

func TestNACKIsAnsweredFromTheSharedCache(t *testing.T) {
	track, layer := testTrack(nil)
	d, w := bindRecorder(t, track)
	layer.WriteAccessUnit(fakeAU(0, true, 5000))
	sent := len(w.pkts)
	lost := w.pkts[2]
	d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		Nacks: []rtcp.NackPair{{PacketID: lost.SequenceNumber}, {PacketID: lost.SequenceNumber + 1000}},
	}})
	if d.Nacks.Load() != 2 || d.Retransmits.Load() != 1 || len(w.pkts) != sent+1 {
		t.Fatalf("NACK for one sent and one never-sent packet: nacked %d resent %d (%d new packets); want 2, 1, 1",
			d.Nacks.Load(), d.Retransmits.Load(), len(w.pkts)-sent)
	}
	again := w.pkts[sent]
	if again.SequenceNumber != lost.SequenceNumber || again.Timestamp != lost.Timestamp || !bytes.Equal(again.Payload, lost.Payload) {
		t.Errorf("retransmission differs from the original: seq %d/%d ts %d/%d", again.SequenceNumber, lost.SequenceNumber, again.Timestamp, lost.Timestamp)
	}
	for i := range uint64(ringSize) { // once the cache has wrapped, the packet is gone
		layer.WriteAccessUnit(fakeAU(i+1, false, 100))
	}
	d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: lost.SequenceNumber}}}})
	if d.Retransmits.Load() != 1 {
		t.Error("a packet older than the cache was resent")
	}
}

func TestCloseStopsForwarding(t *testing.T) {
	track, layer := testTrack(nil)
	d, w := bindRecorder(t, track)
	layer.WriteAccessUnit(fakeAU(0, true, 100))
	if err := d.Unbind(nil); err != nil {
		t.Fatal(err)
	}
	n := len(w.pkts)
	layer.WriteAccessUnit(fakeAU(1, true, 100))
	if len(w.pkts) != n || track.Subscribers() != 0 {
		t.Errorf("after Unbind: %d more packets, %d subscribers", len(w.pkts)-n, track.Subscribers())
	}
}

func TestCaptureToRTPLatencyIsRecorded(t *testing.T) {
	_, layer := testTrack(nil)
	au := fakeAU(0, true, 100)
	au.CaptureTime = time.Now().Add(-20 * time.Millisecond)
	layer.WriteAccessUnit(au)
	if l := layer.CaptureToRTP(); l.Samples != 1 || l.P50 < 20*time.Millisecond || l.P50 > time.Second {
		t.Errorf("latency %+v; want one sample of about 20 ms", l)
	}
}

// TestKeyframeDroppedBeforeSRTPIsNotAStart: a keyframe pion dropped because the subscriber's
// SRTP was not up yet must not count as its start.
func TestKeyframeDroppedBeforeSRTPIsNotAStart(t *testing.T) {
	track, layer := testTrack(nil)
	_, w := bindRecorder(t, track)
	w.notReady = true
	layer.WriteAccessUnit(fakeAU(0, true, 3000))
	w.notReady = false
	layer.WriteAccessUnit(fakeAU(1, false, 3000))
	if len(w.pkts) != 0 {
		t.Fatalf("%d packets of a delta frame sent to a subscriber that never got a keyframe", len(w.pkts))
	}
	layer.WriteAccessUnit(fakeAU(2, true, 3000))
	if len(w.pkts) == 0 {
		t.Fatal("the keyframe after SRTP came up did not start the subscriber")
	}
}

// simulcastTrack has three layers fed like a browser's: each its own sequence numbers and
// timestamp base, from a common clock.
type simulcastFeed struct {
	track  *Track
	layers [3]*Layer
	seq    [3]uint16
	tsBase [3]uint32
	frame  uint32
}

func newSimulcastFeed() *simulcastFeed {
	f := &simulcastFeed{track: NewTrack(TrackInfo{ID: "sc", Kind: webrtc.RTPCodecTypeVideo, Codec: testH264}, "alice", nil, nil)}
	for i, rid := range []string{"q", "h", "f"} {
		f.layers[i] = f.track.AddLayer(rid, QualityOfRID(rid), 320<<i, 180<<i)
		f.seq[i] = uint16(1000 * (i + 1))
		f.tsBase[i] = uint32(7_000_000 * (i + 1))
	}
	return f
}

// picture sends one picture on every layer (two packets each), keyframes on the layers in key.
func (f *simulcastFeed) picture(key map[int]bool) {
	for i, l := range f.layers {
		ts := f.tsBase[i] + f.frame*3000
		first := []byte{0x41, byte(i)} // non-IDR slice, tagged with its layer
		if key[i] {
			first = []byte{0x67, 0x42, byte(i)} // SPS: a keyframe starts here
		}
		l.WriteRTP(f.seq[i], ts, false, first, false)
		l.WriteRTP(f.seq[i]+1, ts, true, []byte{0x41, byte(i)}, false)
		f.seq[i] += 2
	}
	f.frame++
}

func layerOf(p rtp.Packet) int { return int(p.Payload[len(p.Payload)-1]) }

// TestSimulcastSwitchOnlyOnKeyframeAndSeamless: a subscriber asked to move up or down keeps
// the old layer until the new one has a keyframe, and its stream stays one contiguous
// sequence with forward-moving timestamps; NACKs from before the switch are still answered.
func TestSimulcastSwitchOnlyOnKeyframeAndSeamless(t *testing.T) {
	f := newSimulcastFeed()
	d, w := bindRecorder(t, f.track)
	d.SetMaxQuality(Low)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	f.picture(nil)
	if len(w.pkts) != 4 || layerOf(w.pkts[0]) != 0 {
		t.Fatalf("got %d packets, first from layer %d; want 4 from the low layer", len(w.pkts), layerOf(w.pkts[0]))
	}
	beforeSwitch := w.pkts[1]
	d.SetMaxQuality(High)
	f.picture(nil) // no keyframe on high yet: still low
	f.picture(map[int]bool{1: true})
	for _, p := range w.pkts[4:] {
		if layerOf(p) != 0 {
			t.Fatalf("switched to layer %d without a keyframe of the high layer", layerOf(p))
		}
	}
	n := len(w.pkts)
	f.picture(map[int]bool{2: true})
	f.picture(nil)
	onHigh := false
	for _, p := range w.pkts[n:] {
		if layerOf(p) == 2 {
			onHigh = true
		} else if onHigh {
			t.Fatalf("after the high keyframe got a packet of layer %d", layerOf(p))
		}
	}
	if d.Layer() != f.layers[2] || d.Switches.Load() != 1 {
		t.Errorf("forwarding %v after %d switches; want the high layer after 1", d.Layer().Quality, d.Switches.Load())
	}
	d.SetMaxQuality(Medium)
	f.picture(map[int]bool{1: true})
	f.picture(nil)
	checkContiguous(t, w.pkts)
	if got := layerOf(w.pkts[len(w.pkts)-1]); got != 1 {
		t.Errorf("last packet from layer %d; want medium", got)
	}
	// A NACK for a packet sent from the low layer before both switches is answered from it.
	sent := len(w.pkts)
	d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: beforeSwitch.SequenceNumber}}}})
	if len(w.pkts) != sent+1 || layerOf(w.pkts[sent]) != 0 || w.pkts[sent].SequenceNumber != beforeSwitch.SequenceNumber ||
		w.pkts[sent].Timestamp != beforeSwitch.Timestamp {
		t.Errorf("NACK across switches: %d packets resent; want the low layer's packet with its original numbers", len(w.pkts)-sent)
	}
}

// TestLayerFollowsBandwidth: the estimate picks the best layer that fits; loss on a trial
// of a higher layer sends the subscriber back.
func TestLayerFollowsBandwidth(t *testing.T) {
	f := newSimulcastFeed()
	d, w := bindRecorder(t, f.track)
	for i, bps := range []int{150_000, 500_000, 1_500_000} {
		f.layers[i].bitrate.Store(int64(bps))
	}
	report(d, 64) // the start on high (held until loss) does not fit
	d.SetFeedback(300_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[0] {
		t.Fatalf("at 300 kbit/s forwarding %v; want low", d.Layer().Quality)
	}
	report(d, 0)
	d.SetFeedback(3_000_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[2] {
		t.Fatalf("at 3 Mbit/s forwarding %v; want high", d.Layer().Quality)
	}
	d.SetFeedback(600_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[1] {
		t.Fatalf("at 600 kbit/s forwarding %v; want medium", d.Layer().Quality)
	}
	checkContiguous(t, w.pkts)

	// Trial: held on medium by a receiver estimate, the subscriber is offered high after
	// probeFirst; loss during the trial sends it back down.
	d.mu.Lock()
	d.probe.next = time.Now().Add(-time.Millisecond)
	d.mu.Unlock()
	d.Allocate()
	f.picture(map[int]bool{2: true})
	if d.Layer() != f.layers[2] {
		t.Fatalf("no trial of the high layer: forwarding %v", d.Layer().Quality)
	}
	d.HandleRTCP([]rtcp.Packet{&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 1234, FractionLost: 64}}}})
	d.Allocate()
	f.picture(map[int]bool{1: true})
	if d.Layer() != f.layers[1] {
		t.Fatalf("after 25%% loss on trial forwarding %v; want back to medium", d.Layer().Quality)
	}
}

// TestDynacastReportsActiveLayers: the producer hears which layers anyone receives.
func TestDynacastReportsActiveLayers(t *testing.T) {
	var active []string
	track := NewTrack(TrackInfo{ID: "sc", Kind: webrtc.RTPCodecTypeVideo, Codec: testH264}, "alice", nil, func(ls []*Layer) {
		active = active[:0]
		for _, l := range ls {
			active = append(active, l.RID)
		}
	})
	for _, rid := range []string{"q", "h", "f"} {
		track.AddLayer(rid, QualityOfRID(rid), 0, 0)
	}
	d, _ := bindRecorder(t, track)
	track.Layers()[2].WriteRTP(1, 1, true, []byte{0x67, 0x42}, false) // the subscriber starts on f
	if fmt.Sprint(active) != "[f]" {
		t.Fatalf("active layers %v with one subscriber wanting high; want [f]", active)
	}
	d.SetMaxQuality(Low)
	if fmt.Sprint(active) != "[q f]" { // still on f until q's keyframe comes
		t.Fatalf("active %v while switching; want [q f]", active)
	}
	d.Close()
	if len(active) != 0 {
		t.Fatalf("active %v after the only subscriber left; want none", active)
	}
}

func TestKeyframeDetection(t *testing.T) {
	h264 := detectorFor("video/H264")
	cases := []struct {
		name    string
		detect  keyframeDetector
		payload []byte
		ts      uint32
		want    bool
	}{
		{"h264 SPS", h264, []byte{0x67, 0x42}, 1, true},
		{"h264 IDR after its SPS", h264, []byte{0x65, 0x88}, 1, false},
		{"h264 IDR alone", h264, []byte{0x65, 0x88}, 2, true},
		{"h264 slice", h264, []byte{0x41, 0x9a}, 3, false},
		{"h264 STAP-A with SPS", h264, []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, 4, true},
		{"h264 FU-A IDR start", h264, []byte{0x7c, 0x85}, 5, true},
		{"h264 FU-A IDR middle", h264, []byte{0x7c, 0x05}, 6, false},
		{"h264 STAP-A truncated", h264, []byte{0x78, 0, 9, 0x67}, 7, false},
		{"h264 empty", h264, nil, 8, false},
		{"vp8 keyframe", vp8Keyframe, []byte{0x10, 0x00}, 0, true},
		{"vp8 interframe", vp8Keyframe, []byte{0x10, 0x01}, 0, false},
		{"vp8 keyframe with picture id", vp8Keyframe, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, 0, true},
		{"vp8 continuation", vp8Keyframe, []byte{0x00, 0x00}, 0, false},
		{"vp8 truncated", vp8Keyframe, []byte{0x90, 0x80}, 0, false},
	}
	for _, c := range cases {
		if got := c.detect(c.payload, c.ts); got != c.want {
			t.Errorf("%s: %v; want %v", c.name, got, c.want)
		}
	}
}

func FuzzKeyframeDetectors(f *testing.F) {
	f.Add([]byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, uint32(1))
	f.Add([]byte{0x90, 0xff, 0xff}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, ts uint32) {
		_ = detectorFor("video/H264")(b, ts)
		_ = vp8Keyframe(b, ts)
	})
}

// rtxBinding negotiates H.264 on 102 with RTX on 103 and an RTX SSRC.
type rtxBinding struct{ recordingBinding }

func (b rtxBinding) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: testH264, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=102"}, PayloadType: 103},
	}
}
func (b rtxBinding) SSRCRetransmission() webrtc.SSRC { return 5678 }

// TestNACKIsAnsweredOnRTX: with RTX negotiated, a retransmission goes on the RTX stream
// (RFC 4588): its own SSRC, payload type and numbering, the original sequence number first.
func TestNACKIsAnsweredOnRTX(t *testing.T) {
	track, layer := testTrack(nil)
	w := &recordingWriter{}
	d := NewDownTrack(track, "viewer", nil)
	if _, err := d.Bind(rtxBinding{recordingBinding{fakeBinding{ssrc: 1234}, w}}); err != nil {
		t.Fatal(err)
	}
	layer.WriteAccessUnit(fakeAU(0, true, 5000))
	lost := w.pkts[2]
	sent := len(w.pkts)
	for range 2 {
		d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: lost.SequenceNumber}}}})
	}
	if len(w.pkts) != sent+2 {
		t.Fatalf("%d retransmissions for two NACKs", len(w.pkts)-sent)
	}
	first, second := w.pkts[sent], w.pkts[sent+1]
	if first.SSRC != 5678 || first.PayloadType != 103 || second.SequenceNumber != first.SequenceNumber+1 {
		t.Errorf("RTX packets: SSRC %d PT %d seq %d, %d; want SSRC 5678, PT 103, consecutive", first.SSRC, first.PayloadType,
			first.SequenceNumber, second.SequenceNumber)
	}
	osn := uint16(first.Payload[0])<<8 | uint16(first.Payload[1])
	if osn != lost.SequenceNumber || !bytes.Equal(first.Payload[2:], lost.Payload) || first.Timestamp != lost.Timestamp {
		t.Errorf("RTX payload: OSN %d (want %d), payload equal %v", osn, lost.SequenceNumber, bytes.Equal(first.Payload[2:], lost.Payload))
	}
	layer.WriteAccessUnit(fakeAU(1, false, 100))
	if last := w.pkts[len(w.pkts)-1]; last.SSRC != 1234 || last.SequenceNumber != w.pkts[sent-1].SequenceNumber+1 {
		t.Errorf("media after RTX: SSRC %d seq %d; want the media stream continuing", last.SSRC, last.SequenceNumber)
	}
}

// TestSenderReportDescribesWhatWasSent: the down track's own sender report names its SSRC,
// counts what it sent, and maps now to its clock from the last timestamp sent.
func TestSenderReportDescribesWhatWasSent(t *testing.T) {
	track, layer := testTrack(nil)
	d, w := bindRecorder(t, track)
	if _, ok := d.SenderReport(time.Now()); ok {
		t.Fatal("a sender report before anything was sent")
	}
	layer.WriteAccessUnit(fakeAU(0, true, 3000))
	layer.WriteAccessUnit(fakeAU(1, false, 3000))
	now := time.Now()
	sr, ok := d.SenderReport(now)
	if !ok {
		t.Fatal("no sender report after sending")
	}
	octets := 0
	for _, p := range w.pkts {
		octets += len(p.Payload)
	}
	last := w.pkts[len(w.pkts)-1]
	if sr.SSRC != 1234 || int(sr.PacketCount) != len(w.pkts) || int(sr.OctetCount) != octets {
		t.Errorf("report %+v; want SSRC 1234, %d packets, %d octets", sr, len(w.pkts), octets)
	}
	if ahead := sr.RTPTime - last.Timestamp; ahead > 90000/10 {
		t.Errorf("RTP time %d is %d ticks past the last packet's %d; want within 100 ms", sr.RTPTime, ahead, last.Timestamp)
	}
	if sec := int64(sr.NTPTime>>32) - 2208988800; sec != now.Unix() {
		t.Errorf("NTP seconds %d; want %d", sec, now.Unix())
	}
}

// TestHopsAreObservedPerPacketWithSubscribers: each packet handed to subscribers is timed
// once (not once per subscriber); packets nobody receives are not.
func TestHopsAreObservedPerPacketWithSubscribers(t *testing.T) {
	var n atomic.Int32
	var longest atomic.Int64
	ObserveHops(func(s float64) {
		n.Add(1)
		if d := int64(s * 1e9); d > longest.Load() {
			longest.Store(d)
		}
	})
	defer ObserveHops(nil)
	track, layer := testTrack(nil)
	layer.WriteAccessUnit(fakeAU(0, true, 3000)) // no subscriber yet
	if n.Load() != 0 {
		t.Fatalf("%d hops observed without subscribers", n.Load())
	}
	_, w1 := bindRecorder(t, track)
	bindRecorder(t, track)
	layer.WriteAccessUnit(fakeAU(1, true, 3000))
	if n.Load() == 0 || int(n.Load()) != len(w1.pkts) {
		t.Errorf("%d hops observed for %d packets to two subscribers; want one per packet", n.Load(), len(w1.pkts))
	}
	if d := time.Duration(longest.Load()); d <= 0 || d > time.Second {
		t.Errorf("longest hop %v", d)
	}
}

// TestManySubscribersGetEveryPacketInOrder: with enough subscribers that the fan-out is
// split among workers, each subscriber still gets every packet, in order.
func TestManySubscribersGetEveryPacketInOrder(t *testing.T) {
	track, layer := testTrack(nil)
	writers := make([]*recordingWriter, 3*fanoutSlice+7)
	for i := range writers {
		_, writers[i] = bindRecorder(t, track)
	}
	for n := range 20 {
		layer.WriteAccessUnit(fakeAU(uint64(n), n == 0, 5000))
	}
	for i, w := range writers {
		if len(w.pkts) != len(writers[0].pkts) || len(w.pkts) < 40 {
			t.Fatalf("subscriber %d got %d packets, subscriber 0 %d", i, len(w.pkts), len(writers[0].pkts))
		}
		checkContiguous(t, w.pkts)
	}
}
