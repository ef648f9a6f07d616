// Package bwe estimates the bandwidth towards one subscriber from the transport-wide
// congestion control feedback (TWCC, draft-holmer-rmcat-transport-wide-cc-extensions-01)
// it sends back, the way Google Congestion Control does (draft-ietf-rmcat-gcc-02 and
// libwebrtc's modules/congestion_controller/goog_cc):
//
//   - delay-based: packets are grouped into 5 ms send bursts; the change of queueing delay
//     from group to group goes through libwebrtc's trendline filter, an adaptive threshold
//     turns its slope into overusing, normal or underusing, and an AIMD controller follows
//     it: 0.85 × the acknowledged rate on overuse; growth by about a packet per response
//     time near the last point of congestion and multiplicative away from it; never above
//     1.5 × the acknowledged rate, so a connection that sends little does not inflate;
//   - loss-based: more than 10 % loss cuts the rate, less than 2 % lets it grow 5 % per
//     200 ms;
//
// and the estimate is the smaller of the two.
//
// pion/interceptor's gcc allocates for every packet sent and runs two goroutines per
// estimator; an SFU has one estimator per subscriber, hundreds of them. Here the send history
// is a fixed ring behind one small mutex, nothing allocates per packet, and time comes in as
// arguments so tests can run simulated time.
//
// One departure from libwebrtc: it finds out that a link got faster by sending probes, which
// an SFU forwarding media does not do. Instead a multiplicative increase accelerates the
// longer it runs without congestion, from 8 %/s up to 50 %/s, so the estimate reaches a new
// link rate in seconds rather than the half minute that 8 %/s takes.
package bwe

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// historySize packets are remembered for their feedback: 2 s at 10 Mbit/s in
	// 1200-byte packets, 10 s at 2 Mbit/s, against feedback that comes every 50 to 250 ms.
	// At 16 bytes a packet that is 32 KiB per subscriber.
	historySize = 2048
	historyMask = historySize - 1
)

// sentPacket is what the history keeps of one packet: 16 bytes.
type sentPacket struct {
	at    int64  // send time, ns
	seq   uint32 // unwrapped sequence number (mod 2^32): tells the slot's owner from older ones
	size  uint16 // bytes
	state packetState
}

type packetState uint8

const (
	unused   packetState = iota // slot never written
	sent                        // no feedback yet
	lost                        // reported not received (it may still turn up later)
	received                    // reported received
)

// Estimator is the bandwidth estimate for one connection; make it with New. Sent and
// Estimate are for the forwarding path; Feedback and Stats for the RTCP reader. All methods
// are safe for concurrent use.
type Estimator struct {
	sendMu  sync.Mutex
	next    uint64                   // unwrapped sequence number of the next packet sent
	history *[historySize]sentPacket // 32 KiB, allocated with the first packet: a subscriber that sends REMB instead never needs it

	estimate atomic.Int64 // bit/s, read without a lock

	mu         sync.Mutex // guards everything below
	min, max   float64
	reports    []report // scratch for one feedback, kept to not allocate per feedback
	refTime    int64    // unwrapped reference time of the last feedback, in 64 ms units
	haveRef    bool
	lastFb     int64 // when the last feedback came
	haveFb     bool
	groups     interArrival
	trend      trendline
	rate       rateControl
	loss       lossBased
	acked      rateWindow
	rtt        int64 // smoothed round-trip time, ns; 0 until measured
	nAcked     uint64
	ackedBytes uint64
	nLost      uint64
	nIgnored   uint64
	nFeedback  uint64
}

// State is what the delay-based detector makes of the queueing delay.
type State int8

const (
	Normal     State = iota // delay steady: the rate may grow
	Overusing               // delay growing: the link is full, the rate goes down
	Underusing              // delay shrinking: a queue drains, the rate holds
)

func (s State) String() string {
	switch s {
	case Normal:
		return "normal"
	case Overusing:
		return "overusing"
	case Underusing:
		return "underusing"
	}
	return "unknown"
}

// Stats describe the estimator's reasoning, for metrics and debugging.
type Stats struct {
	Estimate     int           // bit/s: the smaller of DelayBased and LossBased, within [min, max]
	DelayBased   int           // bit/s
	LossBased    int           // bit/s; max until loss has mattered
	Acked        int           // bit/s the subscriber received over the last 500 ms; 0 until known
	Trend        float64       // queueing delay trend as compared with Threshold
	Threshold    float64       // adaptive overuse threshold
	State        State         // of the delay-based detector
	LossFraction float64       // of the latest loss report, 0 to 1
	RTT          time.Duration // smoothed; 0 until measured
	// Packets since New: sent, reported received, reported lost, and feedback entries
	// ignored (unknown or duplicate).
	PacketsSent, PacketsAcked, PacketsLost, Ignored uint64
	// AckedBytes counts the bytes of every packet reported received since New: the
	// difference over a few seconds is what arrived, free of the window's burstiness.
	AckedBytes uint64
	Feedbacks  uint64 // feedback packets taken (not rejected whole)
}

// New makes an estimator starting at initial bit/s, never going below min or above max.
// A min below 1 bit/s is taken as 1, a max below min as min.
func New(initial, min, max int) *Estimator {
	lo := math.Max(float64(min), 1)
	hi := math.Max(float64(max), lo)
	start := math.Min(math.Max(float64(initial), lo), hi)
	e := &Estimator{min: lo, max: hi}
	e.trend.reset()
	e.rate = rateControl{rate: start, min: lo, max: hi, acked: start, packetBits: defaultPacketBits}
	e.loss = lossBased{rate: hi}
	e.estimate.Store(int64(start))
	return e
}

// Sent records a packet of size bytes (the whole RTP packet as it leaves: header and payload)
// handed to the network at monotonic time at (nanoseconds, any fixed origin) and returns the
// transport-wide sequence number to put in its header extension. It does not allocate.
func (e *Estimator) Sent(size int, at int64) uint16 {
	size = min(max(size, 0), math.MaxUint16)
	e.sendMu.Lock()
	if e.history == nil {
		e.history = new([historySize]sentPacket)
	}
	seq := uint32(e.next)
	e.next++
	e.history[seq&historyMask] = sentPacket{at: at, seq: seq, size: uint16(size), state: sent}
	e.sendMu.Unlock()
	return uint16(seq)
}

// Estimate is the current target in bit/s.
func (e *Estimator) Estimate() int { return int(e.estimate.Load()) }

// Stats is a snapshot of the estimate and what it is made of.
func (e *Estimator) Stats() Stats {
	e.sendMu.Lock()
	sentCount := e.next
	e.sendMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	acked, _ := e.acked.rate()
	return Stats{
		Estimate:     e.Estimate(),
		DelayBased:   int(e.rate.rate),
		LossBased:    int(e.loss.rate),
		Acked:        int(acked),
		Trend:        e.trend.modifiedTrend,
		Threshold:    e.trend.threshold,
		State:        e.trend.state,
		LossFraction: e.loss.fraction,
		RTT:          time.Duration(e.rtt),
		PacketsSent:  sentCount,
		PacketsAcked: e.nAcked,
		AckedBytes:   e.ackedBytes,
		PacketsLost:  e.nLost,
		Ignored:      e.nIgnored,
		Feedbacks:    e.nFeedback,
	}
}

// publish makes the smaller of the two estimates the one Estimate returns.
func (e *Estimator) publish() {
	r := math.Min(e.rate.rate, e.loss.rate)
	r = math.Min(math.Max(r, e.min), e.max)
	e.estimate.Store(int64(r))
}

// seconds converts a duration in ns to float seconds.
func seconds(d int64) float64 { return float64(d) / 1e9 }

// millis converts a duration in ns to float milliseconds, the unit of libwebrtc's constants.
func millis(d int64) float64 { return float64(d) / 1e6 }

// Probed raises the estimate to bps, a rate the link was just seen to carry without
// queueing or loss (the SFU's padding probe), as libwebrtc does with a probe's result: the
// estimate would otherwise take many seconds to grow from where congestion left it. An
// estimate already higher stays.
func (e *Estimator) Probed(bps int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := math.Min(math.Max(float64(bps), e.min), e.max)
	e.rate.rate = math.Max(e.rate.rate, r)
	e.loss.rate = math.Max(e.loss.rate, r)
	e.publish()
}
