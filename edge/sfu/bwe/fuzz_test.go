package bwe

import (
	"math"
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// FuzzFeedback: whatever parses as RTCP, after 300 packets sent, never panics, keeps every
// estimate within [min, max], and leaves the estimator able to use good feedback afterwards.
// The seeds in testdata are compound packets of real feedback on those 300 packets.
func FuzzFeedback(f *testing.F) {
	const lo, hi = 50_000, 5_000_000
	f.Fuzz(func(t *testing.T, data []byte) {
		e := New(300_000, lo, hi)
		steady(e, 300, 0, 0)
		pkts, err := rtcp.Unmarshal(data)
		if err != nil {
			return
		}
		for i, p := range pkts {
			fb, ok := p.(*rtcp.TransportLayerCC)
			if !ok {
				continue
			}
			_ = e.Feedback(fb, 1_500*ms+int64(i)*10*ms)
			checkBounds(t, e, lo, hi)
		}

		before := e.Stats().PacketsAcked
		if err := e.Feedback(wire(t, twcc.NewRecorder(1), steady(e, 10, 2_000*ms, 0)...), 2_200*ms); err != nil {
			t.Fatalf("good feedback after the fuzzed ones: %v", err)
		}
		if got := e.Stats().PacketsAcked - before; got != 10 {
			t.Fatalf("good feedback after the fuzzed ones acknowledged %d packets; want 10", got)
		}
		checkBounds(t, e, lo, hi)
	})
}

func checkBounds(t *testing.T, e *Estimator, lo, hi int) {
	t.Helper()
	st := e.Stats()
	for _, r := range []struct {
		name string
		bps  int
	}{{"estimate", st.Estimate}, {"delay-based", st.DelayBased}, {"loss-based", st.LossBased}} {
		if r.bps < lo || r.bps > hi {
			t.Fatalf("%s %d bit/s outside [%d, %d]: %+v", r.name, r.bps, lo, hi, st)
		}
	}
	if e.Estimate() != st.Estimate {
		t.Fatalf("Estimate %d, Stats say %d", e.Estimate(), st.Estimate)
	}
	for _, v := range []float64{st.Trend, st.Threshold, st.LossFraction} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("not a number in %+v", st)
		}
	}
	if st.LossFraction < 0 || st.LossFraction > 1 || st.RTT < 0 {
		t.Fatalf("impossible stats %+v", st)
	}
}
