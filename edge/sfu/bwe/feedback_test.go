package bwe

import (
	"errors"
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// arrival is a packet the receiver got: its transport-wide number and when, in µs of the
// receiver's clock.
type arrival struct {
	seq uint16
	at  int64
}

// wire builds the feedback a receiver sends on these arrivals, marshalled and parsed back.
func wire(t testing.TB, rec *twcc.Recorder, arrivals ...arrival) *rtcp.TransportLayerCC {
	t.Helper()
	for _, a := range arrivals {
		rec.Record(1, a.seq, a.at)
	}
	raw, err := rtcp.Marshal(rec.BuildFeedbackPacket())
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	pkts, err := rtcp.Unmarshal(raw)
	if err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if len(pkts) != 1 {
		t.Fatalf("%d feedback packets; want 1", len(pkts))
	}
	return pkts[0].(*rtcp.TransportLayerCC)
}

// steady sends n packets of 1200 bytes from seq on, every 5 ms from at (ns), and returns
// their arrivals 20 ms later on a receiver clock offset by clock µs.
func steady(e *Estimator, n int, at, clock int64) []arrival {
	var out []arrival
	for i := range n {
		sent := at + int64(i)*5*ms
		seq := e.Sent(1200, sent)
		out = append(out, arrival{seq, clock + (sent+20*ms)/1000})
	}
	return out
}

func TestFeedbackEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run sends and gives feedback, and returns the feedback under test.
		run       func(t *testing.T, e *Estimator) func() error
		want      error // nil: no error
		acked     uint64
		unchanged bool // the feedback under test must not move the estimate
	}{
		{
			name: "sequence numbers wrap from 65535 to 0",
			run: func(t *testing.T, e *Estimator) func() error {
				for range 65_530 {
					e.Sent(1200, 0)
				}
				got := steady(e, 12, 0, 0)
				if got[0].seq != 65_530 || got[11].seq != 5 {
					t.Fatalf("sent %d to %d; want 65530 to 5", got[0].seq, got[11].seq)
				}
				return func() error { return e.Feedback(wire(t, twcc.NewRecorder(1), got...), 100*ms) }
			},
			acked: 12,
		},
		{
			name: "duplicate feedback",
			run: func(t *testing.T, e *Estimator) func() error {
				fb := wire(t, twcc.NewRecorder(1), steady(e, 20, 0, 0)...)
				if err := e.Feedback(fb, 150*ms); err != nil {
					t.Fatalf("first copy: %v", err)
				}
				return func() error { return e.Feedback(fb, 160*ms) }
			},
			want: ErrDuplicate, acked: 20, unchanged: true,
		},
		{
			name: "reordered feedback is still used",
			run: func(t *testing.T, e *Estimator) func() error {
				rec := twcc.NewRecorder(1)
				first := wire(t, rec, steady(e, 20, 0, 0)...)
				second := wire(t, rec, steady(e, 20, 100*ms, 0)...)
				if err := e.Feedback(second, 250*ms); err != nil {
					t.Fatalf("second: %v", err)
				}
				return func() error { return e.Feedback(first, 260*ms) }
			},
			acked: 40,
		},
		{
			name: "sequence numbers never sent",
			run: func(t *testing.T, e *Estimator) func() error {
				steady(e, 10, 0, 0)
				return func() error {
					return e.Feedback(wire(t, twcc.NewRecorder(1), arrival{100, 1000}, arrival{101, 2000}), 100*ms)
				}
			},
			want: ErrUnknownPacket, unchanged: true,
		},
		{
			name: "sequence numbers too old for the history",
			run: func(t *testing.T, e *Estimator) func() error {
				old := steady(e, 10, 0, 0)
				steady(e, historySize, 50*ms, 0)
				return func() error { return e.Feedback(wire(t, twcc.NewRecorder(1), old...), 30_000*ms) }
			},
			want: ErrUnknownPacket, unchanged: true,
		},
		{
			name: "status count beyond the chunks",
			run: func(t *testing.T, e *Estimator) func() error {
				fb := wire(t, twcc.NewRecorder(1), steady(e, 10, 0, 0)...)
				fb.PacketStatusCount = 200
				return func() error { return e.Feedback(fb, 100*ms) }
			},
			want: ErrMalformed, unchanged: true,
		},
		{
			name: "status count short of the deltas",
			run: func(t *testing.T, e *Estimator) func() error {
				fb := wire(t, twcc.NewRecorder(1), steady(e, 10, 0, 0)...)
				fb.PacketStatusCount = 4
				return func() error { return e.Feedback(fb, 100*ms) }
			},
			want: ErrMalformed, acked: 4,
		},
		{
			name: "fewer deltas than packets received",
			run: func(t *testing.T, e *Estimator) func() error {
				fb := wire(t, twcc.NewRecorder(1), steady(e, 10, 0, 0)...)
				fb.RecvDeltas = fb.RecvDeltas[:5]
				return func() error { return e.Feedback(fb, 100*ms) }
			},
			want: ErrMalformed, unchanged: true,
		},
		{
			name: "small delta out of its range",
			run: func(t *testing.T, e *Estimator) func() error {
				fb := wire(t, twcc.NewRecorder(1), steady(e, 10, 0, 0)...)
				fb.RecvDeltas[3].Delta = 1 << 40
				return func() error { return e.Feedback(fb, 100*ms) }
			},
			want: ErrMalformed, unchanged: true,
		},
		{
			name: "arrival times seconds apart",
			run: func(t *testing.T, e *Estimator) func() error {
				got := steady(e, 10, 0, 0)
				got[5].at += 6_000_000 // valid on the wire: a large delta
				return func() error { return e.Feedback(wire(t, twcc.NewRecorder(1), got...), 100*ms) }
			},
			want: ErrAbsurdDelta, unchanged: true,
		},
		{
			name: "nil and unknown chunks",
			run: func(t *testing.T, e *Estimator) func() error {
				fb := wire(t, twcc.NewRecorder(1), steady(e, 10, 0, 0)...)
				fb.PacketChunks = append([]rtcp.PacketStatusChunk{(*rtcp.RunLengthChunk)(nil)}, fb.PacketChunks...)
				if err := e.Feedback(fb, 100*ms); !errors.Is(err, ErrMalformed) {
					t.Fatalf("nil chunk: %v; want ErrMalformed", err)
				}
				fb.PacketChunks[0] = &rtcp.RunLengthChunk{PacketStatusSymbol: 7, RunLength: 1}
				return func() error { return e.Feedback(fb, 100*ms) }
			},
			want: ErrMalformed, unchanged: true,
		},
		{
			name: "empty feedback",
			run: func(t *testing.T, e *Estimator) func() error {
				steady(e, 10, 0, 0)
				return func() error { return e.Feedback(&rtcp.TransportLayerCC{}, 100*ms) }
			},
			unchanged: true,
		},
		{
			name: "nil feedback",
			run: func(t *testing.T, e *Estimator) func() error {
				return func() error { return e.Feedback(nil, 100*ms) }
			},
			want: ErrMalformed, unchanged: true,
		},
		{
			name: "feedback before anything was sent",
			run: func(t *testing.T, e *Estimator) func() error {
				return func() error { return e.Feedback(wire(t, twcc.NewRecorder(1), arrival{0, 1000}), 100*ms) }
			},
			want: ErrUnknownPacket, unchanged: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := New(500_000, 100_000, 5_000_000)
			feedback := tc.run(t, e)
			before := e.Stats()
			err := feedback()
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("error %v; want none", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("error %v; want %v", err, tc.want)
			}
			st := e.Stats()
			if st.PacketsAcked != tc.acked {
				t.Errorf("%d packets acknowledged; want %d", st.PacketsAcked, tc.acked)
			}
			if tc.unchanged && (st.Estimate != before.Estimate || st.DelayBased != before.DelayBased ||
				st.LossBased != before.LossBased || st.Acked != before.Acked || st.Trend != before.Trend ||
				st.State != before.State || st.RTT != before.RTT) {
				t.Errorf("estimate moved:\n before %+v\n after  %+v", before, st)
			}
		})
	}
}

// TestReferenceTimeWrap: the same packets and arrivals, once on a receiver clock far from the
// 24-bit reference time's wrap and once crossing it, leave the estimator in the same state
// after every feedback.
func TestReferenceTimeWrap(t *testing.T) {
	run := func(clock int64) []Stats {
		e := New(500_000, 100_000, 5_000_000)
		rec := twcc.NewRecorder(1)
		var trace []Stats
		for i := range 30 {
			sent := int64(i) * 100 * ms
			got := steady(e, 20, sent, clock)
			for j := range got { // the path gets slower as it goes, so the arrivals matter
				got[j].at += int64(i*j) * 100
			}
			if err := e.Feedback(wire(t, rec, got...), sent+150*ms); err != nil {
				t.Fatalf("feedback %d: %v", i, err)
			}
			trace = append(trace, e.Stats())
		}
		return trace
	}
	// Clocks 1.6 s apart (64 ms units of reference time, 25 ms bins of the acknowledged
	// rate) see the same deltas and the same bins.
	far := run(15_625 * 64_000)                // µs: 1000 s
	wrapping := run(((1 << 24) - 16) * 64_000) // wraps 1.024 s in
	for i := range far {
		if far[i] != wrapping[i] {
			t.Fatalf("state after feedback %d differs across the wrap:\n far      %+v\n wrapping %+v", i, far[i], wrapping[i])
		}
	}
	if last := far[len(far)-1]; last.Acked == 0 || last.RTT == 0 {
		t.Errorf("nothing measured: %+v", last)
	}
}
