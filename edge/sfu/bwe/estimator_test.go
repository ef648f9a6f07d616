package bwe

import (
	"sync"
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// The estimator against a simulated bottleneck (sim_test.go): 25 ms each way, a 64 KB
// drop-tail queue (1.7 s at 300 kbit/s, 260 ms at 2 Mbit/s), feedback every 100 ms.

func newBottleneck(capacity int) *link { return newLink(capacity, 64_000, 25*ms) }

// noFeedbackErrors: a well-behaved receiver's feedback is used whole.
func noFeedbackErrors(t *testing.T, s *sim) {
	t.Helper()
	if len(s.errs) > 0 {
		t.Errorf("%d of %d feedbacks had errors, first: %v", len(s.errs), s.feedbacks, s.errs[0])
	}
}

// firstBelow is when the estimate first went under bps after from; -1 if it did not.
func (s *sim) firstBelow(from int64, bps int) int64 {
	for _, x := range s.trace {
		if x.at >= from && x.stats.Estimate < bps {
			return x.at
		}
	}
	return -1
}

func (s *sim) firstAbove(from int64, bps int) int64 {
	for _, x := range s.trace {
		if x.at >= from && x.stats.Estimate > bps {
			return x.at
		}
	}
	return -1
}

// senders: paced evenly, as the brief for a pacer would have it, and as an SFU forwards:
// each 33 ms frame's packets back to back.
var senders = []struct {
	name   string
	frames int64
}{{"paced", 0}, {"frames", 33 * ms}}

// TestRampsUpToCapacity: from 300 kbit/s on a 2 Mbit/s link with more to send, the estimate
// reaches the link's rate within 10 s and stays near it without filling the queue.
func TestRampsUpToCapacity(t *testing.T) {
	for _, sender := range senders {
		t.Run(sender.name, func(t *testing.T) {
			l := newBottleneck(2_000_000)
			s := newSim(t, New(300_000, 50_000, 20_000_000), l, 5_000_000)
			s.frames = sender.frames
			s.run(20_000 * ms)
			noFeedbackErrors(t, s)

			settled := s.settled(0, 1_400_000, 2_200_000)
			if settled < 0 || settled > 10_000*ms {
				t.Errorf("estimate settled within 70-110 %% of 2 Mbit/s at %.1fs; want by 10s", seconds(settled))
			}
			if lost := float64(l.overflowed) / float64(l.sent); lost > 0.03 {
				t.Errorf("%.1f %% of packets overflowed the queue; want at most 3 %%", 100*lost)
			}
			t.Logf("within 70-110 %% of capacity from %.1fs on; %d of %d packets overflowed; longest queue %dms",
				seconds(settled), l.overflowed, l.sent, s.maxQueueDelay/ms)
		})
	}
}

// TestFollowsCapacityDrop: when the link drops from 2 Mbit/s to 300 kbit/s, the growing
// delay brings the estimate under 400 kbit/s within 2 s. The 64 KB queue holds only 0.3 s of
// the excess, so some packets may overflow before the estimate is under the new capacity;
// none do after. The queue then never grows again and drains, if slowly: GCC drains at 15 %
// of the link (0.85 × what arrives).
func TestFollowsCapacityDrop(t *testing.T) {
	for _, sender := range senders {
		t.Run(sender.name, func(t *testing.T) {
			l := newBottleneck(2_000_000)
			s := newSim(t, New(300_000, 50_000, 20_000_000), l, 5_000_000)
			s.frames = sender.frames
			s.run(15_000 * ms)
			drop := s.now
			l.capacity = 300_000
			sentBefore, overflowedBefore := l.sent, l.overflowed
			s.run(drop + 20_000*ms)
			noFeedbackErrors(t, s)

			below := s.firstBelow(drop, 400_000)
			if below < 0 || below-drop > 2_000*ms {
				t.Fatalf("estimate under 400 kbit/s %.1fs after the drop; want within 2s", seconds(below-drop))
			}
			under := s.firstBelow(drop, 300_000)
			var peak int64 // of the queue until the estimate was under the capacity
			overflowed := 0
			drained := int64(-1)
			for _, x := range s.trace {
				switch {
				case x.at < drop:
				case x.at <= under:
					peak = max(peak, x.queue)
					overflowed = x.overflowed - overflowedBefore
				case x.overflowed-overflowedBefore > overflowed:
					t.Fatalf("at %.1fs the queue overflowed, after the estimate was under the capacity", seconds(x.at))
				case x.stats.Estimate < 150_000 || x.stats.Estimate > 400_000:
					t.Fatalf("at %.1fs estimate %d bit/s; want 150-400 kbit/s once it followed the drop", seconds(x.at), x.stats.Estimate)
				case x.queue > peak:
					t.Fatalf("at %.1fs queue of %dms, longer than the %dms it reached before the estimate was under the capacity", seconds(x.at), x.queue/ms, peak/ms)
				case x.queue < 100*ms && drained < 0:
					drained = x.at
				}
			}
			if drained < 0 || drained-drop > 15_000*ms {
				t.Errorf("queue under 100 ms %.1fs after the drop; want within 15s", seconds(drained-drop))
			}
			t.Logf("under 400 kbit/s %.2fs after the drop, under 300 kbit/s after %.2fs; %d of %d packets overflowed; queue peaked at %dms, under 100 ms again after %.1fs",
				seconds(below-drop), seconds(under-drop), overflowed, l.sent-sentBefore, peak/ms, seconds(drained-drop))
		})
	}
}

// TestRecoversWhenCapacityReturns: after a spell at 300 kbit/s the link is back at
// 2 Mbit/s; the estimate climbs past 1.2 Mbit/s within 10 s.
func TestRecoversWhenCapacityReturns(t *testing.T) {
	for _, sender := range senders {
		t.Run(sender.name, func(t *testing.T) {
			l := newBottleneck(2_000_000)
			s := newSim(t, New(300_000, 50_000, 20_000_000), l, 5_000_000)
			s.frames = sender.frames
			s.run(15_000 * ms)
			l.capacity = 300_000
			s.run(30_000 * ms)
			rise := s.now
			l.capacity = 2_000_000
			s.run(rise + 15_000*ms)
			noFeedbackErrors(t, s)

			above := s.firstAbove(rise, 1_200_000)
			if above < 0 || above-rise > 10_000*ms {
				t.Errorf("estimate over 1.2 Mbit/s %.1fs after the link recovered; want within 10s", seconds(above-rise))
			}
			if final := s.at(s.now).Estimate; final < 1_400_000 || final > 2_200_000 {
				t.Errorf("estimate %d bit/s 15s after the link recovered; want 1.4-2.2 Mbit/s", final)
			}
			t.Logf("over 1.2 Mbit/s %.1fs after the link recovered; %d kbit/s after 15s", seconds(above-rise), s.at(s.now).Estimate/1000)
		})
	}
}

// TestLossBased: random loss on a link with room to spare. Heavy loss makes the loss-based
// half cut the estimate though delay does not grow; light loss is ignored.
func TestLossBased(t *testing.T) {
	for _, tc := range []struct {
		name   string
		loss   float64
		lo, hi int // estimate after 10 s, bit/s
	}{
		{"20 % loss backs off", 0.20, 50_000, 400_000},
		{"1 % loss does not", 0.01, 3_000_000, 4_600_000}, // up to 1.5 × the 3 Mbit/s sent
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLink(10_000_000, 200_000, 25*ms)
			l.loss = tc.loss
			s := newSim(t, New(1_000_000, 50_000, 20_000_000), l, 3_000_000)
			s.run(10_000 * ms)
			noFeedbackErrors(t, s)
			st := s.at(s.now)
			if st.Estimate < tc.lo || st.Estimate > tc.hi {
				t.Errorf("estimate %d bit/s after 10s; want %d-%d", st.Estimate, tc.lo, tc.hi)
			}
			if tc.loss > 0.1 && st.LossBased >= st.DelayBased {
				t.Errorf("loss-based %d bit/s is not what holds the estimate down (delay-based %d)", st.LossBased, st.DelayBased)
			}
			t.Logf("estimate %d kbit/s after 10s (delay-based %d, loss-based %d, loss %.2f)",
				st.Estimate/1000, st.DelayBased/1000, min(st.LossBased/1000, 99999), st.LossFraction)
		})
	}
}

// TestSendingLittleDoesNotInflate: a subscriber getting only 100 kbit/s of a 10 Mbit/s link
// has an estimate of 1.5 × that plus 10 kbit/s, not the link's rate: nothing was learnt
// about the rest of the link.
func TestSendingLittleDoesNotInflate(t *testing.T) {
	l := newLink(10_000_000, 200_000, 25*ms)
	s := newSim(t, New(150_000, 50_000, 20_000_000), l, 100_000)
	s.run(10_000 * ms)
	noFeedbackErrors(t, s)
	st := s.at(s.now)
	limit := 1.5*float64(st.Acked) + 10_000
	if st.Acked < 90_000 || st.Acked > 110_000 {
		t.Errorf("acknowledged %d bit/s; want 100 kbit/s", st.Acked)
	}
	if float64(st.Estimate) > limit*1.02 || float64(st.Estimate) < limit*0.9 {
		t.Errorf("estimate %d bit/s with %d acknowledged; want about %.0f", st.Estimate, st.Acked, limit)
	}
}

// TestWrapAround: transport-wide sequence numbers wrap from 65535 to 0, the receiver's 24-bit
// reference time wraps (every 12.4 days of its clock) during the ramp, and the feedback count
// wraps past 255; the estimator goes exactly as it does in the same run without wraps.
func TestWrapAround(t *testing.T) {
	run := func(sentBefore int, clock int64) *sim {
		est := New(300_000, 50_000, 20_000_000)
		for range sentBefore { // never reach the receiver: the first one that does comes after
			est.Sent(1200, 0)
		}
		s := newSim(t, est, newBottleneck(2_000_000), 5_000_000)
		s.clockOffset = clock
		s.run(30_000 * ms)
		noFeedbackErrors(t, s)
		return s
	}
	// Clocks 1.6 s apart (64 ms units of reference time, 25 ms bins of the acknowledged
	// rate) see the same deltas and the same bins.
	plain := run(0, 1_000*64*ms)
	wrapping := run(65_000, ((1<<24)-41)*refTimeUnit) // wraps 2.6 s in
	if sent := wrapping.est.Stats().PacketsSent; sent <= 65_536 {
		t.Fatalf("%d packets sent: the sequence numbers did not wrap", sent)
	}
	if wrapping.feedbacks < 256 {
		t.Fatalf("%d feedbacks: their count did not wrap", wrapping.feedbacks)
	}
	if len(plain.trace) != len(wrapping.trace) {
		t.Fatalf("%d feedbacks without wraps, %d with", len(plain.trace), len(wrapping.trace))
	}
	for i, p := range plain.trace {
		w := wrapping.trace[i]
		w.stats.PacketsSent = p.stats.PacketsSent
		if p != w {
			t.Fatalf("at %.2fs without wraps %+v\nwith wraps %+v", seconds(p.at), p.stats, w.stats)
		}
	}
}

// TestConcurrentUse: forwarding goroutines send while the RTCP reader gives feedback and
// reads the estimate; every packet gets a sequence number of its own.
func TestConcurrentUse(t *testing.T) {
	e := New(1_000_000, 100_000, 10_000_000)
	const senders, each = 4, 5_000
	seqs := make([][]uint16, senders)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				seqs[g] = append(seqs[g], e.Sent(1200, int64(i)*ms/10))
			}
		})
	}
	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() {
		rec := twcc.NewRecorder(1)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var got []arrival
			for j := range 20 {
				got = append(got, arrival{uint16(i*20 + j), int64(i*20+j) * 100})
			}
			_ = e.Feedback(wire(t, rec, got...), int64(i)*10*ms)
			_ = e.Stats()
			_ = e.Estimate()
		}
	})
	wg.Wait()
	close(stop)
	reader.Wait()

	seen := make(map[uint16]bool)
	for _, s := range seqs {
		for _, seq := range s {
			if seen[seq] {
				t.Fatalf("sequence number %d given twice", seq)
			}
			seen[seq] = true
		}
	}
	if st := e.Stats(); st.PacketsSent != senders*each {
		t.Errorf("%d packets sent; want %d", st.PacketsSent, senders*each)
	}
}

// TestProbedRaisesALowEstimate: a probe's rate lifts both the delay- and the loss-based
// estimate left low by congestion, within the bounds; a lower probe changes nothing.
func TestProbedRaisesALowEstimate(t *testing.T) {
	e := New(150_000, 100_000, 2_000_000)
	e.Probed(1_200_000)
	if got := e.Estimate(); got != 1_200_000 {
		t.Errorf("after a 1.2 Mbit/s probe from 150 kbit/s the estimate is %d", got)
	}
	e.Probed(500_000)
	if got := e.Estimate(); got != 1_200_000 {
		t.Errorf("a lower probe moved the estimate to %d", got)
	}
	e.Probed(9_000_000)
	if got := e.Estimate(); got != 2_000_000 {
		t.Errorf("a probe above the maximum gave %d; want the maximum", got)
	}
}

// TestHistoryOnlyOnceUsed: an estimator nobody sends through (its subscriber sends REMB)
// costs no send history; feedback on it is answered as unknown.
func TestHistoryOnlyOnceUsed(t *testing.T) {
	e := New(1_000_000, 10_000, 10_000_000)
	if e.history != nil {
		t.Fatal("a new estimator holds a send history")
	}
	fb := &rtcp.TransportLayerCC{PacketStatusCount: 1, PacketChunks: []rtcp.PacketStatusChunk{
		&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 1}}}
	_ = e.Feedback(fb, 1)
	if e.history != nil || e.Estimate() != 1_000_000 {
		t.Errorf("feedback before any packet: history %v, estimate %d", e.history != nil, e.Estimate())
	}
	e.Sent(1200, 1)
	if e.history == nil {
		t.Error("no history after the first packet")
	}
}
