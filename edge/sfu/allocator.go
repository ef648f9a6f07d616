package sfu

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu/bwe"
)

// Layer choice for one down track: the best layer no higher than the subscriber asked for
// that fits its bandwidth estimate. A receiver-side estimate (REMB) cannot grow much past
// what it receives, so a subscriber held on a low layer would stay there after its link got
// better; it is offered the next layer up on trial from time to time, and keeps it only if
// the trial causes no loss. A kept layer is held even where the estimate does not cover it
// (Chrome's REMB climbs at most 8 % a second, and dips under CPU load) until loss shows the
// link no longer carries it. Loss is the larger of what receiver reports say and the share
// of packets that had to be retransmitted: retransmitted packets count as received in
// receiver reports, which then hide a congested link.
//
// Where the subscriber negotiated RTX and transport-wide congestion control (browsers do),
// the layer above is first tried without switching: the down track sends RTX copies of what
// it forwards until the link carries the upper layer's rate (a padding probe). The SFU's
// estimator sees whether that rate arrived, without queueing or loss; only then does the
// subscriber switch, and a link that cannot carry the layer costs it no frozen picture.

const (
	fitMargin      = 0.9                     // a layer fits when its bitrate is under this share of the estimate
	probeFirst     = 2 * time.Second         // first trial after settling on a layer below the wanted one
	probeMaxGap    = 4 * time.Second         // trials never wait longer than this after a failure
	probeLength    = 2 * time.Second         // how long a trial runs before it is judged
	probeLossLimit = 0.04                    // more loss than this during a trial ends it
	steadyLoss     = 0.10                    // more loss than this on a steady layer steps down
	lossWindow     = time.Second             // retransmitted share of packets sent is measured over this
	keyframeRetry  = time.Second             // a switch waiting for a keyframe asks again this often
	queueLimit     = 200 * time.Millisecond  // more queueing delay than this is congestion
	maxDrain       = 2 * time.Second         // longest wait for a queue to drain before a switch down
	padLength      = 1500 * time.Millisecond // how long a padding probe runs before it is judged
	padMaxGap      = 2 * time.Second         // padding probes never wait longer than this after a failure
	padNext        = time.Second             // next probe after a passed one, for the layer above
	padCarried     = 0.8                     // a probe passes when this share of its rate arrived
	maxPadRatio    = 10                      // RTX copies per forwarded packet, at most
)

type probeState struct {
	trial    *Layer // layer on trial, nil when none
	from     *Layer // layer to go back to
	started  time.Time
	next     time.Time // earliest next trial
	gap      time.Duration
	lastPick *Layer
	// proven is the layer the last passed trial showed the link carries, held even though
	// the estimate does not cover it; nil when the estimate alone decides.
	proven *Layer
	failed time.Time // when the last trial failed: its loss is not the proven layer's
	// held stops forwarding the current layer while the down track waits for a lower
	// layer's keyframe (read by forward, under the down track's lock).
	held      bool
	holdUntil int64     // nanotime before which the pending layer's keyframes are not taken
	askedAt   time.Time // last keyframe request for the pending layer

	// padding is the layer whose rate a padding probe fills the link to (nil when none);
	// padRatio the copies per forwarded byte that takes, padCredit the bytes owed.
	padding   *Layer
	padRatio  float64
	padCredit float64
	padTarget int    // bit/s the probe aims at
	padShort  bool   // the last probe, for more than one layer up, failed: the next aims one up
	padAcked  uint64 // the estimator\'s acknowledged bytes when the probe started

	// Round-trip time from receiver reports, its floor, and the queueing delay above it.
	rtt, minRTT time.Duration
	queued      time.Duration

	// Retransmitted share of the packets sent in the last lossWindow.
	lossAt       time.Time
	resent, sent uint64
	resentShare  float64
}

// lossLocked is the share of packets lost on the way to the subscriber: the larger of the
// latest receiver report's fraction lost and the share of packets sent over the last
// lossWindow that were retransmissions. Receiver reports alone undercount a congested link
// (packets retransmitted after a NACK count as received); retransmissions count only
// packets the SFU had and sent, not the publisher's own losses, which it forwards as gaps.
func (d *DownTrack) lossLocked(now time.Time) float64 {
	pr := &d.probe
	if now.Sub(pr.lossAt) >= lossWindow {
		resent, sent := d.Retransmits.Load(), d.PacketsSent.Load()
		pr.resentShare = 0
		if !pr.lossAt.IsZero() && sent > pr.sent {
			pr.resentShare = float64(resent-pr.resent) / float64(sent-pr.sent)
		}
		pr.lossAt, pr.resent, pr.sent = now, resent, sent
	}
	return max(d.loss, pr.resentShare)
}

// noteRTT takes the round-trip time from a receiver report: now minus the report's LSR
// (the middle 32 bits of our sender report's NTP time) and DLSR, in 1/65536 s. The delay
// above the lowest round trip seen is queueing on the way: a link that fills its queue
// shows it long before it drops packets, and Chrome's REMB does not (it follows what the
// subscriber receives, not its link).
func (d *DownTrack) noteRTT(r rtcp.ReceptionReport, now time.Time) {
	if r.LastSenderReport == 0 {
		return
	}
	ntp := ntpTime(now)
	units := uint32(ntp>>16) - r.LastSenderReport - r.Delay
	if int32(units) < 0 || units > 10*65536 {
		return
	}
	rtt := time.Duration(units) * time.Second / 65536
	d.mu.Lock()
	defer d.mu.Unlock()
	pr := &d.probe
	pr.rtt = rtt
	if pr.minRTT == 0 || rtt < pr.minRTT {
		pr.minRTT = rtt
	} else {
		pr.minRTT += time.Millisecond // follow a path that got longer, slowly
	}
	pr.queued = rtt - pr.minRTT
}

// resendShare is the most of a subscriber's estimate that retransmissions may take: a
// congested link must not fill up with retransmissions of what it already dropped, or the
// keyframe of the lower layer it is moved to never gets through.
const resendShare = 0.5

// worthResendingLocked says whether a NACKed packet of seg is worth its share of the
// retransmission budget: not when congestion moved the subscriber down from seg's layer to
// the one it receives now, or is about to. The subscriber restarts from the lower layer's keyframe, which
// the budget must carry instead (seen with Chromium on a 300 kbit/s link: its NACKs for
// the high layer it left came first in every report and used the budget up, and the low
// layer's keyframe took 5 s to get through).
func (d *DownTrack) worthResendingLocked(seg segment) bool {
	if d.probe.held {
		return false // the layer being left: the link needs to drain for the lower one
	}
	now := d.segments[0]
	return seg.layer == now.layer || d.estimate == 0 || now.layer == nil || seg.layer.Quality <= now.layer.Quality
}

// resendRateLocked is how many packets a second the down track may retransmit: resendRate,
// or less when the subscriber's estimate is low (about 15 a second at 300 kbit/s).
func (d *DownTrack) resendRateLocked() float64 {
	if d.estimate <= 0 {
		return resendRate
	}
	return min(resendRate, max(5, resendShare*float64(d.estimate)/8/rtpMTU))
}

// expectedBitrate is what a layer costs: measured when it flows, else a guess from its size
// (a paused layer measures zero).
func expectedBitrate(l *Layer) int {
	if b := l.Bitrate(); b > 0 {
		return b
	}
	if l.track.Kind == webrtc.RTPCodecTypeAudio {
		return 40_000
	}
	if px := l.Width * l.Height; px > 0 {
		return px * 2 // ≈2 bit per pixel per second: 1.8 Mbit/s at 720p, 115 kbit/s at 180p
	}
	return [...]int{150_000, 500_000, 1_500_000}[l.Quality]
}

// SetMaxQuality caps the layers this subscriber receives.
func (d *DownTrack) SetMaxQuality(q Quality) {
	d.mu.Lock()
	d.maxQuality = q
	d.mu.Unlock()
	d.Allocate()
}

// SetFeedback records the subscriber's bandwidth share for this track (bit/s, 0 = unknown)
// and chooses a layer again.
func (d *DownTrack) SetFeedback(estimate int) {
	d.mu.Lock()
	d.estimate = estimate
	d.mu.Unlock()
	d.Allocate()
}

// Allocate picks the layer to forward and, when it differs, asks for a keyframe on it. It is
// called on feedback and about once a second.
func (d *DownTrack) Allocate() {
	layers := d.track.Layers()
	if len(layers) == 0 {
		return
	}
	now := time.Now()
	d.mu.Lock()
	if d.writer == nil || d.closed {
		d.mu.Unlock()
		return
	}
	pick := d.chooseLocked(layers, now)
	target := d.current
	if d.pending != nil {
		target = d.pending
	}
	var join, leave, joinHeld *Layer
	if pick != target {
		if d.pending != nil && d.pending != d.current {
			leave = d.pending
		}
		if pick == d.current {
			d.pending = nil
		} else {
			d.pending, join = pick, pick
		}
		// Moving down for congestion: stop sending the current layer now rather than at the
		// lower one's keyframe, and take that keyframe only once the queue the current
		// layer built up has drained (the queueing delay the receiver reports show), or it
		// is dropped at the tail of that queue and the picture freezes for seconds.
		d.probe.held = d.estimate > 0 && d.current != nil && pick.Quality < d.current.Quality
		d.probe.holdUntil = 0
		if d.probe.held && d.probe.queued > 0 {
			hold := min(d.probe.queued, maxDrain)
			d.probe.holdUntil = nanotime() + int64(hold)
			d.probe.askedAt = now.Add(hold - keyframeRetry) // ask when the hold ends
			join = nil
		}
	}
	// A switch waiting for its keyframe asks again every keyframeRetry: a publisher may
	// not answer a request (seen with Chromium's simulcast: a trial waited 6 s for one).
	var again *Layer
	if d.pending != nil && pick != target && join == nil && d.pending != d.current {
		joinHeld = d.pending // joins now, asks for its keyframe when the hold ends
	} else if d.pending != nil {
		if join != nil {
			d.probe.askedAt = now
		} else if now.Sub(d.probe.askedAt) >= keyframeRetry {
			again, d.probe.askedAt = d.pending, now
		}
	}
	d.mu.Unlock()
	if leave != nil {
		leave.removeSub(d)
	}
	if join != nil {
		join.addSub(d)
		join.RequestStartKeyframe()
	}
	if joinHeld != nil {
		joinHeld.addSub(d)
	}
	if again != nil {
		again.RequestStartKeyframe()
	}
}

func (d *DownTrack) chooseLocked(layers []*Layer, now time.Time) *Layer {
	wanted := layers[0]
	for _, l := range layers {
		if l.Quality <= d.maxQuality {
			wanted = l
		}
	}
	pr := &d.probe
	if pr.padding != nil && (pr.padding.Quality > wanted.Quality || len(layers) == 1) {
		pr.stopPadding() // the subscriber wants less now, or simulcast ended
	}
	if d.estimate == 0 || len(layers) == 1 {
		// Start on the wanted layer and hold it like a passed trial, until loss says
		// otherwise: a receiver's first estimates (Chrome's REMB starts at the rate it
		// receives, or lower) are not a measurement of its link.
		pr.proven = wanted
		return wanted
	}
	loss := d.lossLocked(now)
	congested := loss > probeLossLimit || pr.queued > queueLimit
	if pr.padding != nil {
		return d.judgePaddingLocked(congested, now)
	}
	if pr.trial != nil {
		switch {
		case congested || d.current != pr.trial && now.Sub(pr.started) > 3*probeLength:
			pr.gap = min(pr.gap*2, probeMaxGap) // failed: back to where it was, wait longer
			pr.next, pr.trial, pr.failed = now.Add(pr.gap), nil, now
			return pr.from
		case now.Sub(pr.started) < probeLength || d.current != pr.trial:
			return pr.trial
		default: // the trial layer flowed for probeLength without loss: keep it
			pr.trial, pr.gap = nil, probeFirst
			pr.proven, pr.lastPick, pr.next = d.current, d.current, now.Add(probeFirst)
			return d.current
		}
	}
	fit := layers[0]
	for _, l := range layers {
		margin := fitMargin
		if l == d.current {
			margin = 1 // staying needs less room than moving up: no flapping at the edge
		}
		if l.Quality <= wanted.Quality && float64(expectedBitrate(l)) <= margin*float64(d.estimate) {
			fit = l
		}
	}
	if pr.proven != nil {
		switch {
		case pr.proven.Quality > wanted.Quality:
			pr.proven = nil // the subscriber wants less
		case congested && now.Sub(pr.failed) > probeLength:
			pr.proven = nil // the link no longer carries it: the estimate decides again
			pr.gap = min(max(pr.gap, probeFirst)*2, probeMaxGap)
		case fit.Quality < pr.proven.Quality:
			fit = pr.proven
		}
	}
	cur := d.current
	if cur == nil {
		return fit
	}
	if loss > steadyLoss && fit.Quality >= cur.Quality && cur != layers[0] {
		fit = layers[max(0, indexOf(layers, cur)-1)] // losing packets: one step down
	}
	if fit != pr.lastPick {
		pr.lastPick = fit
		if pr.gap == 0 {
			pr.gap = probeFirst
		}
		pr.next = now.Add(pr.gap)
	}
	if fit == cur && cur.Quality < wanted.Quality && !congested && !now.Before(pr.next) {
		up := layers[indexOf(layers, cur)+1]
		if d.canPadLocked() {
			// Probe for the wanted layer at once, unless that failed last time: then
			// one layer up, as a trial would.
			if !pr.padShort {
				up = wanted
			}
			d.startPaddingLocked(up, now)
			return cur
		}
		pr.trial, pr.from, pr.started = up, cur, now
		return up
	}
	return fit
}

// canPadLocked says whether the link can be probed with padding: RTX to carry it, and the
// SFU's own estimator to judge it.
func (d *DownTrack) canPadLocked() bool {
	return d.rtxSSRC != 0 && d.twccID != 0 && d.transport != nil && d.current != nil
}

// startPaddingLocked starts a padding probe for layer up: from now on forwarding sends as
// many RTX copies as bring the current layer's rate to up's.
func (d *DownTrack) startPaddingLocked(up *Layer, now time.Time) {
	pr := &d.probe
	cur := max(1, expectedBitrate(d.current))
	pr.padTarget = expectedBitrate(up)
	pr.padding, pr.started, pr.padCredit = up, now, 0
	pr.padAcked = d.transport.Stats().AckedBytes
	pr.padRatio = min(maxPadRatio, max(0, float64(pr.padTarget-cur)/float64(cur)))
}

// judgePaddingLocked ends a padding probe that saw congestion (a failure costs the
// subscriber nothing: it never left its layer) or ran its course, and then switches up if
// the link carried the probe's rate.
func (d *DownTrack) judgePaddingLocked(congested bool, now time.Time) *Layer {
	pr := &d.probe
	st := d.transport.Stats()
	failed := congested || st.State == bwe.Overusing || st.LossFraction > probeLossLimit
	if !failed && now.Sub(pr.started) < padLength {
		return d.current
	}
	up := pr.padding
	pr.stopPadding()
	// What arrived over the whole probe: feedback lags the sending by a round trip, which
	// the probe's length makes small.
	arrived := int(float64(st.AckedBytes-pr.padAcked) * 8 / now.Sub(pr.started).Seconds())
	if failed || float64(arrived) < padCarried*float64(pr.padTarget) {
		pr.gap = min(max(pr.gap, probeFirst/2)*2, padMaxGap)
		pr.next, pr.failed = now.Add(pr.gap), now
		pr.padShort = !pr.padShort && up.Quality > d.current.Quality+1
		return d.current
	}
	pr.padShort = false
	// The link carried the layer: switch, hold it like a passed trial, probe on soon; the
	// connection's estimate starts from what arrived (the subscriber's other tracks and
	// the encoder's bitrate follow it).
	d.transport.Probed(min(arrived, pr.padTarget))
	pr.gap, pr.proven, pr.lastPick, pr.next = probeFirst, up, up, now.Add(padNext)
	return up
}

// stopPadding ends a padding probe: forwarding sends no more copies.
func (pr *probeState) stopPadding() { pr.padding, pr.padRatio, pr.padCredit = nil, 0, 0 }

func indexOf(layers []*Layer, l *Layer) int {
	for i, x := range layers {
		if x == l {
			return i
		}
	}
	return 0
}
