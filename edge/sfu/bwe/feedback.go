package bwe

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/pion/rtcp"
)

const (
	refTimeUnit = 64_000_000 // ns per unit of the 24-bit reference time
	// maxDelaySpread: packets of one feedback whose one-way delays differ by more than this
	// did not go through a queue but through a broken receiver.
	maxDelaySpread = 5_000_000_000
	maxRTT         = 10_000_000_000 // longer round trips are measurement errors
	rttSmoothing   = 0.125          // weight of a new round-trip sample, as TCP's SRTT
	// streamTimeout: after a gap in feedback this long the delay history says nothing
	// about the link now (libwebrtc's kStreamTimeOut).
	streamTimeout = 2_000_000_000
)

// tally is what one feedback said about the packets in the history.
type tally struct {
	lost      int // newly reported lost
	expected  int // newly reported at all
	recovered int // reported lost before, received after all
	unknown   int // not in the history
	duplicate int // reported before
}

// report is one packet of a feedback that the history knows.
type report struct {
	send    int64 // our clock, ns
	arrival int64 // the receiver's clock, ns; only for symbols with a delta
	size    int
	slot    uint32
	symbol  uint16
}

// Feedback takes one TWCC feedback packet received at monotonic time at (the clock of Sent).
// It uses what it can of malformed or inconsistent feedback and says in the error what it
// ignored (see the Err values); ignored parts never change the estimate.
func (e *Estimator) Feedback(fb *rtcp.TransportLayerCC, at int64) error {
	if fb == nil {
		return fmt.Errorf("%w: nil packet", ErrMalformed)
	}
	extraDeltas, err := validate(fb)
	if err != nil {
		return err
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	ref := e.unwrapRefTime(fb.ReferenceTime)
	n, err := e.match(fb, ref)
	if err != nil {
		return err
	}
	if len(e.reports) > 0 { // only a reference time that timed known packets moves ours
		e.refTime, e.haveRef = ref, true
	}
	e.nFeedback++
	e.nIgnored += uint64(n.unknown + n.duplicate)
	e.nLost = e.nLost + uint64(n.lost) - min(uint64(n.recovered), e.nLost)

	if e.haveFb && at-e.lastFb > streamTimeout {
		e.groups = interArrival{}
		e.trend.reset()
	}
	e.lastFb, e.haveFb = at, true

	// Arrival order, as libwebrtc: the delay filter follows the queue, which is FIFO.
	slices.SortStableFunc(e.reports, func(a, b report) int {
		switch {
		case a.arrival < b.arrival:
			return -1
		case a.arrival > b.arrival:
			return 1
		}
		return 0
	})
	for _, r := range e.reports {
		e.acked.add(r.arrival, r.size)
		e.rate.packetSize(r.size)
		sendDelta, arrivalDelta, result := e.groups.add(r.send, r.arrival, at, r.size)
		switch result {
		case groupDeltas:
			e.trend.update(millis(arrivalDelta), millis(sendDelta), r.arrival)
		case groupReset:
			e.trend.reset()
		}
	}
	if len(e.reports) > 0 {
		e.measureRTT(at)
		acked, ok := e.acked.rate()
		e.rate.update(e.trend.state, acked, ok, at, e.rttOrDefault())
	}
	e.loss.update(n.lost, n.expected, n.recovered, math.Min(e.rate.rate, e.loss.rate), at, e.rttOrDefault(), e.min, e.max)
	e.publish()

	if extraDeltas == 0 && n.unknown == 0 && n.duplicate == 0 {
		return nil
	}
	var errs []error
	if extraDeltas > 0 {
		errs = append(errs, fmt.Errorf("%w: %d receive deltas past the %d packets reported, ignored", ErrMalformed, extraDeltas, fb.PacketStatusCount))
	}
	if n.unknown > 0 {
		errs = append(errs, fmt.Errorf("%w: %d of %d from %d", ErrUnknownPacket, n.unknown, fb.PacketStatusCount, fb.BaseSequenceNumber))
	}
	if n.duplicate > 0 {
		errs = append(errs, fmt.Errorf("%w: %d of %d from %d", ErrDuplicate, n.duplicate, fb.PacketStatusCount, fb.BaseSequenceNumber))
	}
	return errors.Join(errs...)
}

// match looks the reported packets up in the history, records what the feedback says of
// each, and leaves the newly received ones with their times in e.reports. Nothing is recorded
// when it returns an error.
func (e *Estimator) match(fb *rtcp.TransportLayerCC, ref int64) (n tally, err error) {
	e.sendMu.Lock()
	defer e.sendMu.Unlock()
	e.reports = e.reports[:0]
	if e.next == 0 {
		return tally{unknown: int(fb.PacketStatusCount)}, nil
	}
	latest := uint32(e.next - 1)
	arrival := ref * refTimeUnit // each delta counts from the previous one, the first from here
	reader := statusReader{chunks: fb.PacketChunks}
	deltas := 0
	minOffset, maxOffset := int64(math.MaxInt64), int64(math.MinInt64)
	for i := range int(fb.PacketStatusCount) {
		symbol, _ := reader.next() // validate checked there is one
		if hasDelta(symbol) {
			arrival += fb.RecvDeltas[deltas].Delta * 1000
			deltas++
		}
		// The newest packet sent with these low 16 bits; the history tells whether it is
		// the one meant (seq) and whether it was sent at all (state).
		seq := fb.BaseSequenceNumber + uint16(i)
		unwrapped := latest - uint32(uint16(latest)-seq)
		slot := unwrapped & historyMask
		p := &e.history[slot]
		if p.state == unused || p.seq != unwrapped {
			n.unknown++
			continue
		}
		r := report{send: p.at, size: int(p.size), slot: slot, symbol: symbol}
		if hasDelta(symbol) {
			r.arrival = arrival
			offset := arrival - p.at
			minOffset, maxOffset = min(minOffset, offset), max(maxOffset, offset)
		}
		e.reports = append(e.reports, r)
	}
	if maxOffset-minOffset > maxDelaySpread {
		e.reports = e.reports[:0]
		return tally{}, fmt.Errorf("%w: one-way delays %v apart", ErrAbsurdDelta, time.Duration(maxOffset-minOffset))
	}

	timed := 0
	for _, r := range e.reports {
		p := &e.history[r.slot]
		if r.symbol == rtcp.TypeTCCPacketNotReceived {
			if p.state != sent {
				n.duplicate++
				continue
			}
			p.state = lost
			n.lost++
			n.expected++
			continue
		}
		switch p.state {
		case received:
			n.duplicate++
			continue
		case lost: // late: it counted as lost in an earlier feedback
			n.recovered++
		default:
			n.expected++
		}
		p.state = received
		e.nAcked++
		e.ackedBytes += uint64(p.size)
		if hasDelta(r.symbol) {
			e.reports[timed] = r
			timed++
		}
	}
	e.reports = e.reports[:timed]
	return n, nil
}

// unwrapRefTime extends the 24-bit reference time (it wraps every 12.4 days) by taking the
// step from the last one as a signed 24-bit number.
func (e *Estimator) unwrapRefTime(ref uint32) int64 {
	ref &= 0xFFFFFF
	if !e.haveRef {
		return int64(ref)
	}
	step := int64(int32((ref-uint32(e.refTime))<<8) >> 8)
	return e.refTime + step
}

// measureRTT takes the round trip of this feedback as libwebrtc does: from sending each packet
// to this feedback, less the time the receiver held the packet before the newest one arrived;
// the smallest of these is the one least inflated by the receiver's feedback interval.
func (e *Estimator) measureRTT(at int64) {
	newest := e.reports[len(e.reports)-1].arrival
	sample := int64(math.MaxInt64)
	for _, r := range e.reports {
		sample = min(sample, at-r.send-(newest-r.arrival))
	}
	if sample < 0 || sample > maxRTT {
		return
	}
	if e.rtt == 0 {
		e.rtt = sample
		return
	}
	e.rtt += int64(rttSmoothing * float64(sample-e.rtt))
}

// rttOrDefault is libwebrtc's 200 ms until there is a measurement.
func (e *Estimator) rttOrDefault() int64 {
	if e.rtt == 0 {
		return 200_000_000
	}
	return e.rtt
}

// validate checks, before anything is used, that the chunks cover the reported packets and
// that each packet reported received with a delta has one that fits its symbol. It returns
// how many deltas are left over.
func validate(fb *rtcp.TransportLayerCC) (extraDeltas int, err error) {
	reader := statusReader{chunks: fb.PacketChunks}
	deltas := 0
	for i := range int(fb.PacketStatusCount) {
		symbol, err := reader.next()
		if err != nil {
			return 0, fmt.Errorf("%w: status of packet %d of %d: %v", ErrMalformed, i, fb.PacketStatusCount, err)
		}
		if !hasDelta(symbol) {
			continue
		}
		if deltas >= len(fb.RecvDeltas) || fb.RecvDeltas[deltas] == nil {
			return 0, fmt.Errorf("%w: no receive delta for packet %d of %d", ErrMalformed, i, fb.PacketStatusCount)
		}
		if d := fb.RecvDeltas[deltas].Delta; !deltaFits(symbol, d) {
			return 0, fmt.Errorf("%w: receive delta %d µs of packet %d does not fit status %d", ErrMalformed, d, i, symbol)
		}
		deltas++
	}
	return len(fb.RecvDeltas) - deltas, nil
}

func hasDelta(symbol uint16) bool {
	return symbol == rtcp.TypeTCCPacketReceivedSmallDelta || symbol == rtcp.TypeTCCPacketReceivedLargeDelta
}

// deltaFits: a small delta is one byte of 250 µs, a large one a signed 16-bit number of them.
func deltaFits(symbol uint16, d int64) bool {
	if symbol == rtcp.TypeTCCPacketReceivedSmallDelta {
		return d >= 0 && d <= math.MaxUint8*rtcp.TypeTCCDeltaScaleFactor
	}
	return d >= math.MinInt16*rtcp.TypeTCCDeltaScaleFactor && d <= math.MaxInt16*rtcp.TypeTCCDeltaScaleFactor
}

var (
	errChunksEnd = errors.New("chunks end early")
	errChunk     = errors.New("unknown chunk")
	errSymbol    = errors.New("unknown status symbol")
)

// statusReader walks the status symbols of a feedback's chunks in sequence-number order.
type statusReader struct {
	chunks []rtcp.PacketStatusChunk
	chunk  int // index of the current chunk
	read   int // symbols read from it
}

func (r *statusReader) next() (uint16, error) {
	for r.chunk < len(r.chunks) {
		symbol, length, err := symbolAt(r.chunks[r.chunk], r.read)
		if err != nil {
			return 0, err
		}
		if r.read < length {
			r.read++
			return symbol, nil
		}
		r.chunk, r.read = r.chunk+1, 0
	}
	return 0, errChunksEnd
}

// symbolAt returns symbol i of a chunk (when i < length) and how many the chunk holds.
func symbolAt(c rtcp.PacketStatusChunk, i int) (symbol uint16, length int, err error) {
	switch c := c.(type) {
	case *rtcp.RunLengthChunk:
		if c == nil {
			return 0, 0, errChunk
		}
		return runSymbol(c.PacketStatusSymbol, c.RunLength)
	case *rtcp.StatusVectorChunk:
		if c == nil {
			return 0, 0, errChunk
		}
		return vectorSymbol(c.SymbolSize, c.SymbolList, i)
	}
	return 0, 0, errChunk
}

func runSymbol(symbol, length uint16) (uint16, int, error) {
	if symbol > rtcp.TypeTCCPacketReceivedWithoutDelta {
		return 0, 0, errSymbol
	}
	return symbol, int(length), nil
}

// vectorSymbol reads a status vector: 14 one-bit symbols (received with a small delta or
// not), or 7 two-bit ones.
func vectorSymbol(size uint16, list []uint16, i int) (uint16, int, error) {
	capacity, top := 7, rtcp.TypeTCCPacketReceivedWithoutDelta
	switch size {
	case rtcp.TypeTCCSymbolSizeOneBit:
		capacity, top = 14, rtcp.TypeTCCPacketReceivedSmallDelta
	case rtcp.TypeTCCSymbolSizeTwoBit:
	default:
		return 0, 0, errChunk
	}
	if len(list) > capacity {
		return 0, 0, errChunk
	}
	if i >= len(list) {
		return 0, len(list), nil
	}
	if list[i] > top {
		return 0, 0, errSymbol
	}
	return list[i], len(list), nil
}
