package bwe

import "math"

// The delay-based half of GCC, after libwebrtc's InterArrivalDelta, TrendlineEstimator and
// AimdRateControl; constants keep libwebrtc's values, and its units (ms) where it has them.

const (
	groupLength = 5_000_000   // packets sent within 5 ms of a group's first are one group
	burstDelta  = 5_000_000   // ...and so are packets that arrive within 5 ms of it, early
	maxBurst    = 100_000_000 // but no burst lasts longer than this
	// clockJump: when arrival times move this much further than our own clock did between
	// two feedbacks, the receiver's clock changed (kArrivalTimeOffsetThreshold).
	clockJump      = 3_000_000_000
	reorderedReset = 3 // groups arriving out of order in a row that restart the grouping

	trendWindow     = 20   // groups in the linear fit
	trendSmoothing  = 0.9  // of the accumulated delay
	trendGain       = 4.0  // slope to the modified trend compared with the threshold
	minDeltas       = 60   // the gain grows with the deltas seen, up to this many
	deltaCounterMax = 1000 // num_of_deltas_ cap
	overuseTime     = 10.0 // ms the trend must stay over the threshold
	kUp             = 0.0087
	kDown           = 0.039
	maxAdaptOffset  = 15.0 // ms: trends further than this over the threshold do not move it
	maxThreshStep   = 100.0
	initialThresh   = 12.5
	minThresh       = 6.0
	maxThresh       = 600.0

	beta              = 0.85   // overuse: the rate becomes this share of the acknowledged rate
	ackedHeadroom     = 1.5    // the rate never grows past this times the acknowledged rate...
	ackedSlack        = 10_000 // ...plus this many bit/s
	rampStart         = 0.08   // multiplicative increase per second when it starts
	rampMax           = 0.50   // and at most, after accelerating by rampStart each second
	minIncrease       = 1_000  // bit/s, the least a multiplicative step adds
	minAdditive       = 4_000  // bit/s per second, the least an additive increase adds
	defaultPacketBits = 1200 * 8
)

type groupResult int8

const (
	groupNone   groupResult = iota // the packet joined a group or was dropped
	groupDeltas                    // the previous two groups are complete: deltas returned
	groupReset                     // the receiver's clock jumped or groups kept reordering
)

// group is a burst of packets sent within groupLength of each other.
type group struct {
	firstSend, lastSend       int64 // our clock
	firstArrival, lastArrival int64 // the receiver's clock
	system                    int64 // our clock when the feedback on its last packet came
	size                      int
	used                      bool
}

// interArrival turns packets into the send and arrival time differences between groups.
type interArrival struct {
	cur, prev group
	reordered int
}

// add takes one packet, in arrival order. It returns the deltas between the previous two
// groups when p is the first packet of a new one.
func (g *interArrival) add(send, arrival, system int64, size int) (sendDelta, arrivalDelta int64, result groupResult) {
	switch {
	case !g.cur.used:
		g.cur = group{firstSend: send, lastSend: send, firstArrival: arrival, used: true}
	case send < g.cur.firstSend:
		return 0, 0, groupNone // sent before the current group: late, its delay is unknown
	case g.newGroup(send, arrival):
		if g.prev.used {
			sendDelta = g.cur.lastSend - g.prev.lastSend
			arrivalDelta = g.cur.lastArrival - g.prev.lastArrival
			systemDelta := g.cur.system - g.prev.system
			if arrivalDelta-systemDelta >= clockJump || arrivalDelta-systemDelta <= -clockJump {
				*g = interArrival{}
				return 0, 0, groupReset
			}
			if arrivalDelta < 0 {
				g.reordered++
				if g.reordered >= reorderedReset {
					*g = interArrival{}
					return 0, 0, groupReset
				}
				return 0, 0, groupNone
			}
			g.reordered = 0
			result = groupDeltas
		}
		g.prev = g.cur
		g.cur = group{firstSend: send, lastSend: send, firstArrival: arrival, used: true}
	default:
		g.cur.lastSend = max(g.cur.lastSend, send)
	}
	g.cur.size += size
	g.cur.lastArrival = arrival
	g.cur.system = system
	return sendDelta, arrivalDelta, result
}

func (g *interArrival) newGroup(send, arrival int64) bool {
	if g.belongsToBurst(send, arrival) {
		return false
	}
	return send-g.cur.firstSend > groupLength
}

// belongsToBurst: packets that queued behind each other somewhere before the receiver
// arrive closer together than they were sent; they are one group.
func (g *interArrival) belongsToBurst(send, arrival int64) bool {
	arrivalDelta := arrival - g.cur.lastArrival
	sendDelta := send - g.cur.lastSend
	if sendDelta == 0 {
		return true
	}
	return arrivalDelta-sendDelta < 0 && arrivalDelta <= burstDelta && arrival-g.cur.firstArrival < maxBurst
}

// trendline fits a line through the smoothed accumulated delay of the last groups; its
// slope says whether a queue builds up, and an adaptive threshold tells overuse from noise.
type trendline struct {
	numDeltas     int
	firstArrival  int64
	started       bool
	accumulated   float64 // ms
	smoothed      float64 // ms
	hist          [trendWindow]point
	histLen       int
	histNext      int
	prevTrend     float64
	modifiedTrend float64
	threshold     float64
	lastUpdate    int64 // of the threshold, the receiver's clock
	updated       bool
	overusing     float64 // ms the trend has been over the threshold; -1 when it is not
	overuseCount  int
	state         State
}

type point struct{ x, y float64 }

func (t *trendline) reset() {
	*t = trendline{threshold: initialThresh, overusing: -1}
}

// update takes the delays between two groups (ms) and the arrival of the newer one.
func (t *trendline) update(arrivalDelta, sendDelta float64, arrival int64) {
	t.numDeltas = min(t.numDeltas+1, deltaCounterMax)
	if !t.started {
		t.firstArrival, t.started = arrival, true
	}
	t.accumulated += arrivalDelta - sendDelta
	t.smoothed = trendSmoothing*t.smoothed + (1-trendSmoothing)*t.accumulated
	t.hist[t.histNext] = point{millis(arrival - t.firstArrival), t.smoothed}
	t.histNext = (t.histNext + 1) % trendWindow
	t.histLen = min(t.histLen+1, trendWindow)

	trend := t.prevTrend
	if t.histLen == trendWindow {
		if slope, ok := t.slope(); ok {
			trend = slope
		}
	}
	t.detect(trend, sendDelta, arrival)
}

// slope is the least-squares slope of the delay history.
func (t *trendline) slope() (float64, bool) {
	var sumX, sumY float64
	for _, p := range t.hist {
		sumX += p.x
		sumY += p.y
	}
	avgX, avgY := sumX/trendWindow, sumY/trendWindow
	var num, den float64
	for _, p := range t.hist {
		num += (p.x - avgX) * (p.y - avgY)
		den += (p.x - avgX) * (p.x - avgX)
	}
	if den == 0 || math.IsNaN(num/den) || math.IsInf(num/den, 0) {
		return 0, false
	}
	return num / den, true
}

// detect is libwebrtc's TrendlineEstimator::Detect: overuse when the trend stays over the
// threshold for overuseTime and is still growing.
func (t *trendline) detect(trend, sendDelta float64, arrival int64) {
	if t.numDeltas < 2 {
		t.state = Normal
		return
	}
	modified := float64(min(t.numDeltas, minDeltas)) * trend * trendGain
	t.modifiedTrend = modified
	switch {
	case modified > t.threshold:
		if t.overusing == -1 {
			t.overusing = sendDelta / 2 // assume it started halfway through this delta
		} else {
			t.overusing += sendDelta
		}
		t.overuseCount++
		if t.overusing > overuseTime && t.overuseCount > 1 && trend >= t.prevTrend {
			t.overusing, t.overuseCount = 0, 0
			t.state = Overusing
		}
	case modified < -t.threshold:
		t.overusing, t.overuseCount = -1, 0
		t.state = Underusing
	default:
		t.overusing, t.overuseCount = -1, 0
		t.state = Normal
	}
	t.prevTrend = trend
	t.adaptThreshold(modified, arrival)
}

// adaptThreshold follows the trend slowly upwards and faster downwards (k_up, k_down), so
// that delay noise the flow cannot avoid stops counting as overuse but a real queue still
// does, and so that GCC does not starve against loss-based flows.
func (t *trendline) adaptThreshold(modified float64, arrival int64) {
	if !t.updated {
		t.lastUpdate, t.updated = arrival, true
	}
	if math.Abs(modified) > t.threshold+maxAdaptOffset {
		t.lastUpdate = arrival // a spike: do not adapt to it
		return
	}
	k := kUp
	if math.Abs(modified) < t.threshold {
		k = kDown
	}
	step := math.Min(math.Max(millis(arrival-t.lastUpdate), 0), maxThreshStep)
	t.threshold += k * (math.Abs(modified) - t.threshold) * step
	t.threshold = math.Min(math.Max(t.threshold, minThresh), maxThresh)
	t.lastUpdate = arrival
}

type controlState int8

const (
	hold controlState = iota
	increase
	decrease
)

// rateControl is the AIMD controller that turns the detector's signal into a rate.
type rateControl struct {
	rate       float64 // bit/s, the delay-based estimate
	min, max   float64
	state      controlState
	lastChange int64 // our clock
	changed    bool
	acked      float64 // the latest acknowledged rate, bit/s
	capacity   linkCapacity
	packetBits float64 // average size of acknowledged packets
	ramping    bool    // in a multiplicative increase since rampSince
	rampSince  int64
}

func (c *rateControl) packetSize(bytes int) {
	c.packetBits += 0.05 * (float64(bytes*8) - c.packetBits)
}

// update takes the detector's state after a feedback and the acknowledged rate, when known.
func (c *rateControl) update(signal State, acked float64, ackedOK bool, now, rtt int64) {
	if ackedOK {
		c.acked = acked
	}
	if signal == Overusing && !c.timeToReduce(now, rtt) {
		return
	}
	switch signal {
	case Normal:
		if c.state == hold {
			c.state, c.lastChange, c.changed = increase, now, true
		}
	case Overusing:
		c.state = decrease
	case Underusing:
		c.state = hold // a queue drains: wait for it
	}
	switch c.state {
	case increase:
		c.increase(now, rtt)
	case decrease:
		c.decrease(now)
	default:
		c.ramping = false
	}
}

// timeToReduce: one decrease per round trip (10 to 200 ms) lets the acknowledged rate show
// its effect before the next, unless what arrives is under half the rate.
func (c *rateControl) timeToReduce(now, rtt int64) bool {
	if !c.changed {
		return true
	}
	interval := min(max(rtt, 10_000_000), 200_000_000)
	return now-c.lastChange >= interval || c.acked < 0.5*c.rate
}

func (c *rateControl) increase(now, rtt int64) {
	if c.acked > c.capacity.upper() {
		c.capacity = linkCapacity{} // well past the last congestion point: the link changed
	}
	dt := math.Min(math.Max(seconds(now-c.lastChange), 0), 1)
	c.lastChange, c.changed = now, true
	limit := ackedHeadroom*c.acked + ackedSlack
	if c.rate >= limit {
		c.ramping = false // not using what it has: no reason to go faster
		return
	}
	var step float64
	if c.capacity.known {
		// Near the last congestion point: about one packet per response time.
		c.ramping = false
		response := seconds(rtt) + 0.1
		step = math.Max(c.packetBits/response, minAdditive) * dt
	} else {
		if !c.ramping {
			c.ramping, c.rampSince = true, now
		}
		perSecond := math.Min(rampStart*(1+seconds(now-c.rampSince)), rampMax)
		step = math.Max(c.rate*(math.Pow(1+perSecond, dt)-1), minIncrease)
	}
	if c.rate+step > limit {
		c.ramping = false
	}
	c.rate = math.Min(math.Min(c.rate+step, limit), c.max)
}

func (c *rateControl) decrease(now int64) {
	r := beta * c.acked
	if r > c.rate && c.capacity.known {
		r = beta * c.capacity.estimate * 1000
	}
	if r < c.rate {
		c.rate = math.Max(r, c.min)
	}
	if c.acked < c.capacity.lower() {
		c.capacity = linkCapacity{} // far under the last congestion point: the link changed
	}
	c.capacity.update(c.acked/1000, 0.05)
	c.state, c.lastChange, c.changed = hold, now, true
	c.ramping = false
}

// linkCapacity is libwebrtc's LinkCapacityEstimator: an average of the acknowledged rates at
// which overuse was detected, and how much they vary; kbit/s as there.
type linkCapacity struct {
	estimate  float64
	deviation float64
	known     bool
}

func (l *linkCapacity) update(sample, alpha float64) {
	if !l.known {
		l.estimate, l.deviation, l.known = sample, 0.4, true
	} else {
		l.estimate = (1-alpha)*l.estimate + alpha*sample
	}
	norm := math.Max(l.estimate, 1)
	e := l.estimate - sample
	l.deviation = (1-alpha)*l.deviation + alpha*e*e/norm
	l.deviation = math.Min(math.Max(l.deviation, 0.4), 2.5)
}

// upper and lower bound the congestion point, bit/s.
func (l *linkCapacity) upper() float64 {
	if !l.known {
		return math.Inf(1)
	}
	return (l.estimate + 3*math.Sqrt(l.deviation*l.estimate)) * 1000
}

func (l *linkCapacity) lower() float64 {
	if !l.known {
		return 0
	}
	return math.Max(0, l.estimate-3*math.Sqrt(l.deviation*l.estimate)) * 1000
}
