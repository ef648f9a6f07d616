package bwe

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// The simulated network for the estimator's tests: a sender pacing packets at the estimate,
// one bottleneck link, and a receiver that answers with transport-wide feedback built by
// pion/interceptor's twcc.Recorder (a port of Chrome's feedback generator), marshalled and
// parsed again so the estimator sees what crosses the wire.

const ms = int64(time.Millisecond)

// link is a bottleneck: a FIFO queue of at most queueLimit bytes sent on at capacity bit/s,
// then a fixed propagation delay. A packet that does not fit in the queue is dropped; loss
// drops that share of packets at random before the queue.
type link struct {
	capacity   int
	queueLimit int
	delay      int64
	loss       float64
	rng        *rand.Rand
	queue      []queued // packets not yet fully sent on, in order
	lastDepart int64
	// What happened, for the tests to judge.
	sent, overflowed, randomLost int
}

type queued struct {
	size   int
	depart int64
}

func newLink(capacity, queueLimit int, delay int64) *link {
	return &link{capacity: capacity, queueLimit: queueLimit, delay: delay, rng: rand.New(rand.NewPCG(1, 2))}
}

// send puts a packet on the link at now and says when it arrives, if it does.
func (l *link) send(size int, now int64) (arrival int64, ok bool) {
	l.sent++
	for len(l.queue) > 0 && l.queue[0].depart <= now {
		l.queue = l.queue[1:]
	}
	if l.loss > 0 && l.rng.Float64() < l.loss {
		l.randomLost++
		return 0, false
	}
	queuedBytes := 0
	for _, q := range l.queue {
		queuedBytes += q.size
	}
	if queuedBytes+size > l.queueLimit {
		l.overflowed++
		return 0, false
	}
	depart := max(now, l.lastDepart) + int64(size)*8*int64(time.Second)/int64(l.capacity)
	l.lastDepart = depart
	l.queue = append(l.queue, queued{size, depart})
	return depart + l.delay, true
}

// queueDelay is how long a packet sent now would wait in the queue.
func (l *link) queueDelay(now int64) int64 { return max(l.lastDepart-now, 0) }

type inFlight struct {
	at  int64
	seq uint16
}

type feedbackInFlight struct {
	at int64
	fb *rtcp.TransportLayerCC
}

// sim runs sender, link and receiver in simulated time.
type sim struct {
	t      testing.TB
	est    *Estimator
	link   *link
	source int // bit/s the media offers; the sender sends min(source, estimate)
	packet int // bytes
	// frames, when set, makes the sender forward like an SFU: a frame's packets back to back
	// (50 µs apart) every frames, instead of paced evenly.
	frames  int64
	inFrame int   // packets of the current frame still to send
	budget  int64 // bytes the rate allowed that no frame has used yet

	now         int64
	nextSend    int64
	toReceiver  []inFlight
	recorder    *twcc.Recorder
	clockOffset int64 // the receiver's clock minus ours
	reportEvery int64
	nextReport  int64
	toSender    []feedbackInFlight

	// What happened.
	errs          []error
	feedbacks     int
	trace         []sample
	maxQueueDelay int64
}

type sample struct {
	at         int64
	stats      Stats
	queue      int64 // queueing delay on the link
	overflowed int   // packets the queue had dropped by then
}

// newSim starts a simulation; when the test fails, it logs the trace.
func newSim(t testing.TB, est *Estimator, l *link, source int) *sim {
	s := &sim{t: t, est: est, link: l, source: source, packet: 1200,
		recorder: twcc.NewRecorder(1), reportEvery: 100 * ms, nextReport: 100 * ms}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("trace:\n%s", s)
		}
	})
	return s
}

// run advances the simulation to until.
func (s *sim) run(until int64) {
	const never = int64(1 << 62)
	for {
		next := min(s.nextSend, s.nextReport)
		if len(s.toReceiver) > 0 {
			next = min(next, s.toReceiver[0].at)
		}
		if len(s.toSender) > 0 {
			next = min(next, s.toSender[0].at)
		}
		if next > until || next == never {
			s.now = until
			return
		}
		s.now = next
		switch {
		case len(s.toReceiver) > 0 && s.toReceiver[0].at == next:
			p := s.toReceiver[0]
			s.toReceiver = s.toReceiver[1:]
			s.recorder.Record(1, p.seq, (p.at+s.clockOffset)/1000)
		case len(s.toSender) > 0 && s.toSender[0].at == next:
			f := s.toSender[0]
			s.toSender = s.toSender[1:]
			s.feedbacks++
			if err := s.est.Feedback(f.fb, f.at); err != nil {
				s.errs = append(s.errs, err)
			}
			s.trace = append(s.trace, sample{f.at, s.est.Stats(), s.link.queueDelay(f.at), s.link.overflowed})
		case s.nextReport == next:
			s.report()
			s.nextReport += s.reportEvery
		default:
			s.send()
		}
	}
}

func (s *sim) send() {
	rate := min(s.est.Estimate(), s.source)
	if s.frames > 0 && s.inFrame == 0 { // a new frame of what the rate allows
		s.budget += int64(rate) * s.frames / int64(time.Second) / 8
		s.inFrame = int(s.budget / int64(s.packet))
		if s.inFrame == 0 {
			s.nextSend = (s.now/s.frames + 1) * s.frames
			return
		}
		s.budget -= int64(s.inFrame * s.packet)
	}
	seq := s.est.Sent(s.packet, s.now)
	if at, ok := s.link.send(s.packet, s.now); ok {
		s.toReceiver = append(s.toReceiver, inFlight{at, seq})
	}
	s.maxQueueDelay = max(s.maxQueueDelay, s.link.queueDelay(s.now))
	if s.frames == 0 {
		s.nextSend = s.now + int64(s.packet)*8*int64(time.Second)/int64(rate)
		return
	}
	s.inFrame--
	if s.inFrame > 0 {
		s.nextSend = s.now + 50_000
	} else {
		s.nextSend = (s.now/s.frames + 1) * s.frames
	}
}

// report sends what the receiver's recorder has, through the wire format, back over a path
// with the link's propagation delay and no queue.
func (s *sim) report() {
	pkts := s.recorder.BuildFeedbackPacket()
	if len(pkts) == 0 {
		return
	}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		s.t.Fatalf("marshal feedback: %v", err)
	}
	parsed, err := rtcp.Unmarshal(raw)
	if err != nil {
		s.t.Fatalf("unmarshal feedback: %v", err)
	}
	for _, p := range parsed {
		if fb, ok := p.(*rtcp.TransportLayerCC); ok {
			s.toSender = append(s.toSender, feedbackInFlight{s.now + s.link.delay, fb})
		}
	}
}

// at is the last sample at or before t.
func (s *sim) at(t int64) Stats {
	var last Stats
	for _, x := range s.trace {
		if x.at > t {
			break
		}
		last = x.stats
	}
	return last
}

// settled is when the estimate first came within [lo, hi] after from and stayed there
// until the end of the trace; -1 when it never settled.
func (s *sim) settled(from int64, lo, hi int) int64 {
	since := int64(-1)
	for _, x := range s.trace {
		if x.at < from {
			continue
		}
		in := x.stats.Estimate >= lo && x.stats.Estimate <= hi
		switch {
		case in && since < 0:
			since = x.at
		case !in:
			since = -1
		}
	}
	return since
}

// String is the trace at every half second, for failure messages and -v.
func (s *sim) String() string {
	var b strings.Builder
	next := int64(0)
	for _, x := range s.trace {
		if x.at < next {
			continue
		}
		next = x.at + 250*ms
		fmt.Fprintf(&b, "%5.1fs est %5d delay %5d loss %5d acked %5d kbit/s  %-10v trend %6.1f thr %5.1f loss %4.2f rtt %4dms queue %4dms overflowed %d\n",
			seconds(x.at), x.stats.Estimate/1000, x.stats.DelayBased/1000, min(x.stats.LossBased/1000, 99999), x.stats.Acked/1000,
			x.stats.State, x.stats.Trend, x.stats.Threshold, x.stats.LossFraction, x.stats.RTT.Milliseconds(), x.queue/ms, x.overflowed)
	}
	return b.String()
}
