package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu/bwe"
)

// timedWriter is a wireWriter that also notes when each packet left.
type timedWriter struct {
	wireWriter
	at []time.Time
}

func (w *timedWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.at = append(w.at, time.Now())
	return w.wireWriter.WriteRTP(h, payload)
}

// rtxTWCCBinding negotiates RTX (payload type 103 for 102, SSRC 5678) and transport-wide
// congestion control.
type rtxTWCCBinding struct{ twccBinding }

func (b rtxTWCCBinding) CodecParameters() []webrtc.RTPCodecParameters {
	return append(b.twccBinding.CodecParameters(), webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=102"}, PayloadType: 103})
}
func (b rtxTWCCBinding) SSRCRetransmission() webrtc.SSRC { return 5678 }

// feedbackFor reports packets[from:] received as they were sent (a link with room to
// spare), or, with lostShare, the last part of them not received.
func feedbackFor(t *testing.T, w *timedWriter, from int, lostShare float64) *rtcp.TransportLayerCC {
	t.Helper()
	pkts := w.pkts[from:]
	n := len(pkts)
	received := n - int(float64(n)*lostShare)
	base := transportSeq(t, pkts[0])
	fb := &rtcp.TransportLayerCC{MediaSSRC: 1234, BaseSequenceNumber: base, PacketStatusCount: uint16(n), FbPktCount: uint8(from)}
	fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: uint16(received)})
	if received < n {
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: uint16(n - received)})
	}
	var prev int64
	for i := range received {
		if s := transportSeq(t, pkts[i]); s != base+uint16(i) {
			t.Fatalf("packet %d of the probe has transport-wide number %d; want %d", i, s, base+uint16(i))
		}
		at := w.at[from+i].Sub(w.at[from]).Microseconds() / 250 * 250 // the receiver's 250 µs ticks
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: at - prev})
		prev = at
	}
	return fb
}

// probeFeed settles a subscriber with RTX and transport-wide congestion control that wants
// at most medium on the low layer of a simulcast track, and starts a padding probe for
// medium.
func probeFeed(t *testing.T) (*simulcastFeed, *DownTrack, *timedWriter) {
	return probeFeedUpTo(t, Medium)
}

func probeFeedUpTo(t *testing.T, want Quality) (*simulcastFeed, *DownTrack, *timedWriter) {
	t.Helper()
	f := newSimulcastFeed()
	w := &timedWriter{}
	d := NewDownTrack(f.track, "viewer", nil)
	d.UseTransportCC(bwe.New(1_000_000, 10_000, 10_000_000))
	d.SetMaxQuality(want)
	if _, err := d.Bind(rtxTWCCBinding{twccBinding{fakeBinding{ssrc: 1234}, w, testTWCCID}}); err != nil {
		t.Fatal(err)
	}
	for i, bps := range []int{100_000, 300_000, 900_000} {
		f.layers[i].bitrate.Store(int64(bps))
	}
	report(d, 64) // the start on high does not fit
	d.SetFeedback(250_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	report(d, 0)
	if d.Layer() != f.layers[0] {
		t.Fatalf("at 250 kbit/s forwarding %v; want low", d.Layer().Quality)
	}
	d.SetFeedback(250_000) // settled on low
	d.mu.Lock()
	d.probe.next = time.Now().Add(-time.Millisecond)
	d.mu.Unlock()
	d.SetFeedback(250_000)
	d.mu.Lock()
	padding := d.probe.padding
	d.mu.Unlock()
	if padding != f.layers[want] || d.Layer() != f.layers[0] {
		t.Fatalf("time for a probe: padding toward %v, forwarding %v; want padding toward %v while on low", padding, d.Layer().Quality, want)
	}
	return f, d, w
}

// sendBig forwards n pictures of 1000-byte packets on the low layer, 5 ms apart.
func sendBig(f *simulcastFeed, n int) {
	body := make([]byte, 1000)
	body[0] = 0x41
	for range n {
		ts := f.tsBase[0] + f.frame*3000
		f.layers[0].WriteRTP(f.seq[0], ts, true, body, false)
		f.seq[0]++
		f.frame++
		time.Sleep(5 * time.Millisecond)
	}
}

func countSSRC(pkts []rtp.Packet, ssrc uint32) int {
	n := 0
	for _, p := range pkts {
		if p.SSRC == ssrc {
			n++
		}
	}
	return n
}

// TestPaddingProbeMovesUpWhenTheLinkCarriesIt: probing for the medium layer, the down track
// stays on low and adds RTX copies up to medium's rate (two per packet: 100 → 300 kbit/s);
// the subscriber's feedback shows all of it arrived without queueing, and the down track
// switches to medium at its next keyframe.
func TestPaddingProbeMovesUpWhenTheLinkCarriesIt(t *testing.T) {
	f, d, w := probeFeed(t)
	from := len(w.pkts)
	sendBig(f, 40)
	media, copies := countSSRC(w.pkts[from:], 1234), countSSRC(w.pkts[from:], 5678)
	if media != 40 || copies < 78 || copies > 80 {
		t.Fatalf("probing from 100 to 300 kbit/s: %d media packets, %d RTX copies; want 40 and 80", media, copies)
	}
	d.HandleRTCP([]rtcp.Packet{feedbackFor(t, w, from, 0)})
	d.mu.Lock()
	d.probe.started = time.Now().Add(-padLength - time.Millisecond)
	d.mu.Unlock()
	d.SetFeedback(250_000)
	f.picture(map[int]bool{1: true})
	if d.Layer() != f.layers[1] {
		t.Fatalf("after a probe that arrived whole (%+v) forwarding %v; want medium", d.transport.Stats(), d.Layer().Quality)
	}
	before := d.Padding.Load()
	f.picture(nil)
	if d.Padding.Load() != before {
		t.Error("padding goes on after the probe ended")
	}
	checkContiguous(t, mediaOnly(w.pkts))
}

// TestFailedPaddingProbeCostsNothing: when a fifth of the probe is lost, the probe stops at
// once, the subscriber stays on low without a switch, and the next probe waits.
func TestFailedPaddingProbeCostsNothing(t *testing.T) {
	f, d, w := probeFeed(t)
	from := len(w.pkts)
	sendBig(f, 40)
	d.HandleRTCP([]rtcp.Packet{feedbackFor(t, w, from, 0.2)})
	d.SetFeedback(250_000) // judged at once: loss ends a probe early
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	d.mu.Lock()
	padding, next := d.probe.padding, d.probe.next
	d.mu.Unlock()
	if d.Layer() != f.layers[0] || padding != nil || d.Switches.Load() != 0 {
		t.Fatalf("after a probe with 20%% loss: forwarding %v, padding %v, %d switches; want low, none, 0", d.Layer().Quality, padding, d.Switches.Load())
	}
	if !next.After(time.Now()) {
		t.Error("the next probe may start at once after a failed one")
	}
	before := d.Padding.Load()
	f.picture(nil)
	if d.Padding.Load() != before {
		t.Error("padding goes on after the probe failed")
	}
	checkContiguous(t, mediaOnly(w.pkts))
}

func mediaOnly(pkts []rtp.Packet) []rtp.Packet {
	var out []rtp.Packet
	for _, p := range pkts {
		if p.SSRC == 1234 {
			out = append(out, p)
		}
	}
	return out
}

// TestProbeAimsAtTheWantedLayerThenOneUp: a subscriber that wants high is probed for high
// straight from low; when the link does not carry that, the next probe aims at medium.
func TestProbeAimsAtTheWantedLayerThenOneUp(t *testing.T) {
	f, d, w := probeFeedUpTo(t, High)
	from := len(w.pkts)
	sendBig(f, 20)
	if copies := countSSRC(w.pkts[from:], 5678); copies < 150 {
		t.Fatalf("probing from 100 to 900 kbit/s: %d RTX copies for 20 packets; want about 160", copies)
	}
	d.HandleRTCP([]rtcp.Packet{feedbackFor(t, w, from, 0.3)})
	d.SetFeedback(250_000)
	d.mu.Lock()
	d.probe.next = time.Now().Add(-time.Millisecond)
	d.mu.Unlock()
	d.SetFeedback(250_000)
	if l := d.Probing(); l != f.layers[1] || d.Layer() != f.layers[0] {
		t.Fatalf("after a failed probe for high: probing %v on %v; want medium on low", l, d.Layer().Quality)
	}
}

// TestProbeEndsWhenTheSubscriberWantsLess: a probe toward high gives way to one toward
// medium when the subscriber asks for medium at most, and stops when it asks for low.
func TestProbeEndsWhenTheSubscriberWantsLess(t *testing.T) {
	f, d, w := probeFeedUpTo(t, High)
	d.SetMaxQuality(Medium)
	if l := d.Probing(); l != nil && l.Quality != Medium {
		t.Fatalf("probing toward %v after the subscriber asked for medium at most", l.Quality)
	}
	d.SetMaxQuality(Low)
	if l := d.Probing(); l != nil {
		t.Fatalf("still probing toward %v after the subscriber asked for low", l.Quality)
	}
	from := len(w.pkts)
	sendBig(f, 5)
	if copies := countSSRC(w.pkts[from:], 5678); copies != 0 {
		t.Errorf("%d RTX copies sent after the probe ended", copies)
	}
}
