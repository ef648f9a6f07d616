package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// report sends the down track a receiver report with this fraction lost (of 256).
func report(d *DownTrack, lost uint8) {
	d.HandleRTCP([]rtcp.Packet{&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 1234, FractionLost: lost}}}})
}

// TestStartsOnTheWantedLayerUntilLoss: a new subscriber gets the layer it wants and keeps it
// through a low first estimate (Chrome's first REMB is no measurement of its link) until
// loss shows the link does not carry it.
func TestStartsOnTheWantedLayerUntilLoss(t *testing.T) {
	f := newSimulcastFeed()
	d, _ := bindRecorder(t, f.track)
	for i, bps := range []int{150_000, 500_000, 1_500_000} {
		f.layers[i].bitrate.Store(int64(bps))
	}
	d.SetFeedback(300_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[2] {
		t.Fatalf("new subscriber with a first estimate of 300 kbit/s and no loss forwarding %v; want high", d.Layer().Quality)
	}
	report(d, 64)
	d.SetFeedback(300_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[0] {
		t.Fatalf("with 25%% loss at 300 kbit/s forwarding %v; want low", d.Layer().Quality)
	}
}

// TestPassedTrialIsKeptUntilLoss: a subscriber whose receiver estimate (REMB) lags behind
// its link keeps the layer a trial proved, although the estimate does not cover it;
// retransmissions of a large share of what it was sent (loss that receiver reports hide
// once the retransmissions arrive) send it back to what the estimate allows.
func TestPassedTrialIsKeptUntilLoss(t *testing.T) {
	f := newSimulcastFeed()
	d, w := bindRecorder(t, f.track)
	for i, bps := range []int{150_000, 500_000, 1_500_000} {
		f.layers[i].bitrate.Store(int64(bps))
	}
	report(d, 64) // the start on high does not fit
	d.SetFeedback(300_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[0] {
		t.Fatalf("at 300 kbit/s forwarding %v; want low", d.Layer().Quality)
	}
	report(d, 0)

	// A trial of medium that runs its course without loss.
	d.SetFeedback(300_000) // settled on low
	d.mu.Lock()
	d.probe.next = time.Now().Add(-time.Millisecond)
	d.mu.Unlock()
	d.SetFeedback(300_000)
	f.picture(map[int]bool{1: true})
	if d.Layer() != f.layers[1] {
		t.Fatalf("no trial of medium: forwarding %v", d.Layer().Quality)
	}
	d.mu.Lock()
	d.probe.started = time.Now().Add(-probeLength - time.Millisecond)
	d.mu.Unlock()
	for range 3 { // the estimate stays where the low layer held it
		d.SetFeedback(300_000)
		f.picture(map[int]bool{0: true, 1: true, 2: true})
	}
	if d.Layer() != f.layers[1] {
		t.Fatalf("after a trial without loss and estimates of 300 kbit/s forwarding %v; want medium kept", d.Layer().Quality)
	}

	// A quarter of the packets sent over the last second were retransmissions: the link
	// does not carry medium.
	d.mu.Lock()
	d.probe.resent, d.probe.sent = d.Retransmits.Load(), d.PacketsSent.Load()
	d.mu.Unlock()
	for range 10 {
		f.picture(nil)
	}
	d.Retransmits.Add(5)
	d.mu.Lock()
	d.probe.lossAt = time.Now().Add(-2 * lossWindow)
	d.mu.Unlock()
	d.SetFeedback(300_000)
	f.picture(map[int]bool{0: true})
	if d.Layer() != f.layers[0] {
		t.Fatalf("with 25%% of packets retransmitted forwarding %v; want back to low", d.Layer().Quality)
	}
	checkContiguous(t, w.pkts)
}

// TestCurrentLayerStaysAtItsOwnRate: an estimate equal to the current layer's rate (Chrome's
// first REMB is the rate it receives) keeps the layer; moving up needs headroom.
func TestCurrentLayerStaysAtItsOwnRate(t *testing.T) {
	f := newSimulcastFeed()
	d, _ := bindRecorder(t, f.track)
	for i, bps := range []int{150_000, 500_000, 1_500_000} {
		f.layers[i].bitrate.Store(int64(bps))
	}
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[2] {
		t.Fatalf("before any estimate forwarding %v; want high", d.Layer().Quality)
	}
	report(d, 64) // a little loss once: from now on the estimate decides
	d.SetFeedback(3_000_000)
	report(d, 0)
	d.SetFeedback(1_550_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[2] {
		t.Fatalf("with an estimate just above high's rate forwarding %v; want high kept", d.Layer().Quality)
	}
	d.SetFeedback(520_000)
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	if d.Layer() != f.layers[0] {
		t.Fatalf("at 520 kbit/s forwarding %v; want low (medium needs 10%% headroom to move to)", d.Layer().Quality)
	}
}

// TestRetransmissionsFitTheEstimate: a subscriber on a slow link NACKing a long burst gets
// at most half of its estimate in retransmissions, not a flood that keeps the link
// congested.
func TestRetransmissionsFitTheEstimate(t *testing.T) {
	track, layer := testTrack(nil)
	d, w := bindRecorder(t, track)
	layer.WriteAccessUnit(fakeAU(0, true, 60_000)) // a keyframe of 50 packets
	d.SetFeedback(300_000)
	first := w.pkts[0].SequenceNumber
	d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		Nacks: []rtcp.NackPair{{PacketID: first, LostPackets: 0xffff}, {PacketID: first + 17, LostPackets: 0xffff}, {PacketID: first + 34, LostPackets: 0xffff}},
	}})
	want := 16 // resendShare of 300 kbit/s in packets of rtpMTU bytes, rounded up
	if got := d.Retransmits.Load(); got == 0 || got > uint64(want) {
		t.Fatalf("at 300 kbit/s, %d of %d NACKed packets resent at once; want 1 to %d", got, d.Nacks.Load(), want)
	}
}

// TestNoRetransmissionsOfTheLayerLeftForCongestion: moved down by its estimate, a subscriber
// NACKing packets of the high layer it left gets none of them again (it restarts from the
// low layer's keyframe), while the low layer's packets are still resent.
func TestNoRetransmissionsOfTheLayerLeftForCongestion(t *testing.T) {
	f := newSimulcastFeed()
	d, w := bindRecorder(t, f.track)
	for i, bps := range []int{150_000, 500_000, 1_500_000} {
		f.layers[i].bitrate.Store(int64(bps))
	}
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	high := w.pkts[0]
	if layerOf(high) != 2 {
		t.Fatalf("started on layer %d; want high", layerOf(high))
	}
	report(d, 64)
	d.SetFeedback(300_000)
	f.picture(map[int]bool{0: true})
	low := w.pkts[len(w.pkts)-1]
	if layerOf(low) != 0 {
		t.Fatalf("at 300 kbit/s on layer %d; want low", layerOf(low))
	}
	sent := len(w.pkts)
	d.HandleRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{Nacks: []rtcp.NackPair{{PacketID: high.SequenceNumber}, {PacketID: low.SequenceNumber}}}})
	if len(w.pkts) != sent+1 || layerOf(w.pkts[sent]) != 0 {
		t.Fatalf("NACK of a high and a low packet after moving down: %d resent; want only the low one", len(w.pkts)-sent)
	}
}

// TestMovingDownStopsTheOldLayerAtOnce: moved down by its estimate, a subscriber is sent
// nothing more of the high layer while it waits for the low layer's keyframe.
func TestMovingDownStopsTheOldLayerAtOnce(t *testing.T) {
	f := newSimulcastFeed()
	d, w := bindRecorder(t, f.track)
	for i, bps := range []int{150_000, 500_000, 1_500_000} {
		f.layers[i].bitrate.Store(int64(bps))
	}
	f.picture(map[int]bool{0: true, 1: true, 2: true})
	report(d, 64)
	d.SetFeedback(300_000)
	sent := len(w.pkts)
	f.picture(nil) // no keyframe of low yet
	if len(w.pkts) != sent {
		t.Fatalf("%d packets of the high layer sent after moving down for congestion; want none", len(w.pkts)-sent)
	}
	f.picture(map[int]bool{0: true})
	if len(w.pkts) == sent || layerOf(w.pkts[len(w.pkts)-1]) != 0 {
		t.Fatal("the low layer's keyframe did not start it")
	}
	checkContiguous(t, w.pkts)
}

// TestQueueingDelayFromReceiverReports: the round trip from a receiver report's LSR and
// DLSR, and the delay above the lowest one, which ends a trial before the queue overflows.
func TestQueueingDelayFromReceiverReports(t *testing.T) {
	f := newSimulcastFeed()
	d, _ := bindRecorder(t, f.track)
	now := time.Now()
	lsr := func(ago time.Duration) uint32 {
		at := now.Add(-ago)
		ntp := uint64(at.Unix()+2208988800)<<32 | uint64(at.Nanosecond())<<32/1e9
		return uint32(ntp >> 16)
	}
	d.noteRTT(rtcp.ReceptionReport{SSRC: 1234, LastSenderReport: lsr(30 * time.Millisecond), Delay: 65536 / 100}, now) // 10 ms held
	d.noteRTT(rtcp.ReceptionReport{SSRC: 1234, LastSenderReport: lsr(420 * time.Millisecond), Delay: 65536 / 10}, now) // 100 ms held
	d.mu.Lock()
	rtt, minRTT, queued := d.probe.rtt, d.probe.minRTT, d.probe.queued
	d.mu.Unlock()
	near := func(got, want time.Duration) bool {
		return got > want-2*time.Millisecond && got < want+2*time.Millisecond
	}
	if !near(minRTT, 20*time.Millisecond) || !near(rtt, 320*time.Millisecond) || !near(queued, 299*time.Millisecond) {
		t.Fatalf("round trip %v, lowest %v, queued %v; want 320 ms, 20 ms (+1 ms) and about 300 ms", rtt, minRTT, queued)
	}
}
