package bwe

import (
	"runtime"
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// feedbackLoop sends batches of 50 packets, 2 ms apart, one batch every 128 ms (two units of
// reference time), and answers each with the same feedback moved on by a batch, so that a
// loop of them allocates nothing of its own.
type feedbackLoop struct {
	e     *Estimator
	fb    *rtcp.TransportLayerCC
	ref   uint32
	batch int64
}

func newFeedbackLoop(t testing.TB) *feedbackLoop {
	e := New(1_000_000, 100_000, 10_000_000)
	var got []arrival
	for i := range 50 {
		sent := int64(i) * 2 * ms
		got = append(got, arrival{e.Sent(1200, sent), (sent + 20*ms) / 1000})
	}
	l := &feedbackLoop{e: e, fb: wire(t, twcc.NewRecorder(1), got...)}
	l.ref = l.fb.ReferenceTime
	if err := e.Feedback(l.fb, 150*ms); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *feedbackLoop) next() error {
	l.batch++
	start := l.batch * 128 * ms
	for i := range 50 {
		l.e.Sent(1200, start+int64(i)*2*ms)
	}
	l.fb.BaseSequenceNumber += 50
	l.fb.ReferenceTime = (l.ref + 2*uint32(l.batch)) & 0xFFFFFF
	return l.e.Feedback(l.fb, start+150*ms)
}

// TestNoAllocations: the forwarding path's Sent never allocates, and neither does Feedback
// once its scratch space has grown to the feedback size.
func TestNoAllocations(t *testing.T) {
	e := New(1_000_000, 100_000, 10_000_000)
	var clock int64
	if n := testing.AllocsPerRun(1000, func() { clock += ms; e.Sent(1200, clock) }); n != 0 {
		t.Errorf("Sent: %v allocations; want 0", n)
	}
	l := newFeedbackLoop(t)
	var err error
	if n := testing.AllocsPerRun(100, func() { err = l.next() }); n != 0 {
		t.Errorf("Feedback: %v allocations per feedback of 50 packets; want 0", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	if st := l.e.Stats(); st.PacketsAcked < 100*50 || st.Acked < 3_000_000 || st.Acked > 4_000_000 {
		t.Errorf("the loop did not work as feedback: %+v", st)
	}
}

func BenchmarkSent(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		e := New(1_000_000, 100_000, 10_000_000)
		b.ReportAllocs()
		var clock int64
		for b.Loop() {
			clock += 100_000
			e.Sent(1200, clock)
		}
	})
	b.Run("4 goroutines", func(b *testing.B) {
		e := New(1_000_000, 100_000, 10_000_000)
		b.ReportAllocs()
		b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			var clock int64
			for pb.Next() {
				clock += 100_000
				e.Sent(1200, clock)
			}
		})
	})
}

// BenchmarkFeedback: one feedback on 50 packets, with the 50 calls of Sent for them.
func BenchmarkFeedback(b *testing.B) {
	l := newFeedbackLoop(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := l.next(); err != nil {
			b.Fatal(err)
		}
	}
}
