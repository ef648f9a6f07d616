package sfu

import (
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu/bwe"
)

const testTWCCID = 5

// wireWriter keeps each packet as it would leave: marshalled at once, since the down track
// reuses its header (extensions included) for the next packet.
type wireWriter struct{ pkts []rtp.Packet }

func (w *wireWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	b, err := (&rtp.Packet{Header: *h, Payload: payload}).Marshal()
	if err != nil {
		return 0, err
	}
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		return 0, err
	}
	w.pkts = append(w.pkts, p)
	return len(b), nil
}
func (w *wireWriter) Write(b []byte) (int, error) { return len(b), nil }

// twccBinding negotiates the transport-wide sequence number extension (or not, with id 0).
type twccBinding struct {
	fakeBinding
	w  webrtc.TrackLocalWriter
	id int
}

func (b twccBinding) WriteStream() webrtc.TrackLocalWriter { return b.w }
func (b twccBinding) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	if b.id == 0 {
		return nil
	}
	return []webrtc.RTPHeaderExtensionParameter{{URI: sdp.TransportCCURI, ID: b.id}}
}

func transportSeq(t *testing.T, p rtp.Packet) uint16 {
	t.Helper()
	ext := p.GetExtension(testTWCCID)
	if len(ext) != 2 {
		t.Fatalf("packet %d has no transport-wide sequence number (extension %d: %x)", p.SequenceNumber, testTWCCID, ext)
	}
	return uint16(ext[0])<<8 | uint16(ext[1])
}

// TestTransportWideNumbersSpanTheConnection: two down tracks of one subscriber connection
// number their packets in one transport-wide sequence, and the subscriber's feedback on
// those numbers reaches the connection's estimator through either track.
func TestTransportWideNumbersSpanTheConnection(t *testing.T) {
	est := bwe.New(1_000_000, 100_000, 10_000_000)
	tracks := make([]*Layer, 2)
	writers := make([]*wireWriter, 2)
	downs := make([]*DownTrack, 2)
	for i := range tracks {
		track, layer := testTrack(nil)
		tracks[i], writers[i] = layer, &wireWriter{}
		downs[i] = NewDownTrack(track, "viewer", nil)
		downs[i].UseTransportCC(est)
		if _, err := downs[i].Bind(twccBinding{fakeBinding{ssrc: webrtc.SSRC(1000 + i)}, writers[i], testTWCCID}); err != nil {
			t.Fatal(err)
		}
	}
	for n := range 10 {
		for _, l := range tracks {
			l.WriteAccessUnit(fakeAU(uint64(n), n == 0, 3000))
		}
	}
	seen := map[uint16]bool{}
	for i, w := range writers {
		if len(w.pkts) < 20 {
			t.Fatalf("track %d sent %d packets for 10 pictures", i, len(w.pkts))
		}
		prev := -1
		for _, p := range w.pkts {
			s := transportSeq(t, p)
			if seen[s] {
				t.Fatalf("transport-wide number %d used twice", s)
			}
			if int(s) <= prev {
				t.Fatalf("track %d: transport-wide number %d after %d", i, s, prev)
			}
			seen[s], prev = true, int(s)
		}
	}
	total := len(writers[0].pkts) + len(writers[1].pkts)
	for s := range total {
		if !seen[uint16(s)] {
			t.Fatalf("transport-wide numbers are not 0..%d: %d missing", total-1, s)
		}
	}
	if got := est.Stats().PacketsSent; got != uint64(total) {
		t.Errorf("estimator counted %d packets sent; the tracks sent %d", got, total)
	}

	// The subscriber reports every packet received, 1 ms apart; the feedback arrives on
	// the second track's RTCP.
	deltas := make([]*rtcp.RecvDelta, total)
	for i := range deltas {
		deltas[i] = &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1000}
	}
	fb := &rtcp.TransportLayerCC{MediaSSRC: 1001, BaseSequenceNumber: 0, PacketStatusCount: uint16(total),
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: uint16(total)}},
		RecvDeltas:   deltas}
	downs[1].HandleRTCP([]rtcp.Packet{fb})
	if st := est.Stats(); st.PacketsAcked != uint64(total) || st.Feedbacks != 1 {
		t.Errorf("after feedback on all %d packets the estimator saw %d acknowledged in %d feedbacks", total, st.PacketsAcked, st.Feedbacks)
	}
}

// TestNoTransportWideNumbersWithoutNegotiation: a subscriber that did not negotiate the
// extension (it sends REMB instead) gets plain packets, and nothing is recorded for them.
func TestNoTransportWideNumbersWithoutNegotiation(t *testing.T) {
	est := bwe.New(1_000_000, 100_000, 10_000_000)
	track, layer := testTrack(nil)
	w := &wireWriter{}
	d := NewDownTrack(track, "viewer", nil)
	d.UseTransportCC(est)
	if _, err := d.Bind(twccBinding{fakeBinding{ssrc: 1234}, w, 0}); err != nil {
		t.Fatal(err)
	}
	layer.WriteAccessUnit(fakeAU(0, true, 3000))
	if len(w.pkts) == 0 {
		t.Fatal("nothing sent")
	}
	for _, p := range w.pkts {
		if p.Extension {
			t.Fatalf("packet %d carries header extensions %v", p.SequenceNumber, p.Extensions)
		}
	}
	if n := est.Stats().PacketsSent; n != 0 {
		t.Errorf("estimator recorded %d packets of a connection without the extension", n)
	}
}

// BenchmarkForwardWithTransportCC: what stamping adds to forwarding, and that it allocates
// nothing per packet.
func BenchmarkForwardWithTransportCC(b *testing.B) {
	est := bwe.New(1_000_000, 100_000, 10_000_000)
	track, layer := testTrack(func(*Layer) {})
	w := &discardWriter{}
	d := NewDownTrack(track, "bench", nil)
	d.UseTransportCC(est)
	if _, err := d.Bind(twccBinding{fakeBinding{ssrc: 1}, w, testTWCCID}); err != nil {
		b.Fatal(err)
	}
	key, delta := benchAU(true), benchAU(false)
	layer.WriteAccessUnit(key)
	b.ReportAllocs()
	for b.Loop() {
		layer.WriteAccessUnit(delta)
	}
}
