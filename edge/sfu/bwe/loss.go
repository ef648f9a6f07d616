package bwe

import "math"

// The loss-based half of GCC, after libwebrtc's SendSideBandwidthEstimation.
const (
	lossMinPackets    = 20   // a loss fraction needs this many packets reported
	lossHigh          = 0.10 // more loss than this cuts the rate
	lossLow           = 0.02 // less loss than this lets it grow
	lossGrowth        = 1.05
	lossGrowthEvery   = 200_000_000
	lossDecreaseEvery = 300_000_000 // plus a round trip: one cut per round of feedback on it
)

// lossBased is the rate that loss allows: max until loss first matters.
type lossBased struct {
	rate                float64 // bit/s
	lost, expected      int     // reported since the last loss fraction
	fraction            float64
	lastGrowth, lastCut int64
	grown, cut          bool
}

// update takes a feedback's newly lost and newly reported packets and those of an earlier
// one that arrived after all; current is the estimate that a cut starts from.
func (l *lossBased) update(lost, expected, recovered int, current float64, now, rtt int64, lo, hi float64) {
	l.lost = max(l.lost+lost-recovered, 0)
	l.expected += expected
	if l.expected < lossMinPackets {
		return
	}
	l.fraction = float64(l.lost) / float64(l.expected)
	l.lost, l.expected = 0, 0
	switch {
	case l.fraction > lossHigh:
		if l.cut && now-l.lastCut < lossDecreaseEvery+rtt {
			return
		}
		l.rate = math.Max(math.Min(l.rate, current)*(1-0.5*l.fraction), lo)
		l.lastCut, l.cut = now, true
	case l.fraction < lossLow:
		if l.grown && now-l.lastGrowth < lossGrowthEvery {
			return
		}
		l.rate = math.Min(l.rate*lossGrowth, hi)
		l.lastGrowth, l.grown = now, true
	}
}
