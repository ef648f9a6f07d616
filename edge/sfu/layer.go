package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp/codecs"

	"github.com/edgeflux/edge/internal/media"
)

// Quality orders the layers of a simulcast track.
type Quality int

const (
	Low Quality = iota
	Medium
	High
)

func (q Quality) String() string {
	switch q {
	case Low:
		return "low"
	case Medium:
		return "medium"
	default:
		return "high"
	}
}

// ParseQuality reads "low", "medium", "high"; ok is false for anything else.
func ParseQuality(s string) (Quality, bool) {
	switch s {
	case "low":
		return Low, true
	case "medium":
		return Medium, true
	case "high":
		return High, true
	}
	return High, false
}

// QualityOfRID maps the conventional simulcast rids (q, h, f) to qualities; anything else is High.
func QualityOfRID(rid string) Quality {
	switch rid {
	case "q", "l", "low":
		return Low
	case "h", "m", "mid", "medium":
		return Medium
	}
	return High
}

// rtpMTU is the largest RTP payload the appliance's own tracks send, small enough for any
// path with a 1280-byte IPv6 minimum MTU after SRTP, UDP, IP and TURN overheads.
const rtpMTU = 1200

// keyframeRequestGap throttles repair keyframe requests per layer: a PLI storm from many
// subscribers costs the publisher one keyframe per gap. startKeyframeGap throttles the
// requests of subscribers starting: a crowd joining at once shares keyframes, and none waits
// long for its first picture.
const (
	keyframeRequestGap = 300 * time.Millisecond
	startKeyframeGap   = 100 * time.Millisecond
)

// Layer is one encoding of a track: one RTP stream with its own packet cache, shared by all
// subscribers that receive it.
type Layer struct {
	track   *Track
	RID     string
	Quality Quality
	Width   int
	Height  int

	ring   packetRing
	detect keyframeDetector
	subs   atomic.Pointer[[]*DownTrack] // copied on change, read without a lock per packet
	subsMu sync.Mutex

	bytes, packets atomic.Uint64
	bitrate        atomic.Int64 // bit/s over the last measurement window
	lastBytes      uint64       // owned by measure
	repair, start  throttle     // keyframe requests: for repairs (PLI), for subscribers starting
	keyframes      atomic.Uint64
	lastKeyframe   atomic.Int64  // monotonic ns of the last keyframe start
	active         atomic.Bool   // dynacast: someone receives this layer
	epoch          atomic.Uint32 // bumped when a new producer takes over (Track.Adopt)
	audioLevel     atomic.Int32  // loudest RFC 6464 level in -dBov (0 loudest, 127 silence) since the room looked; audio only

	// The appliance's own layers are packetized here, from the encoder's goroutine.
	payloader codecs.H264Payloader
	seq       uint16
	lastTS    uint32
	latency   latencyWindow

	fanoutDone sync.WaitGroup // the fan-out workers' slices of the packet being forwarded (fanout.go)
}

func newLayer(t *Track, rid string, q Quality, width, height int) *Layer {
	l := &Layer{track: t, RID: rid, Quality: q, Width: width, Height: height, detect: detectorFor(t.Codec.MimeType)}
	l.subs.Store(&[]*DownTrack{})
	l.audioLevel.Store(127)
	return l
}

// Track is the track this layer belongs to.
func (l *Layer) Track() *Track { return l.track }

// Bitrate is the layer's incoming bitrate over the last second.
func (l *Layer) Bitrate() int { return int(l.bitrate.Load()) }

// Packets is how many packets the layer received.
func (l *Layer) Packets() uint64 { return l.packets.Load() }

// WriteRTP stores a publisher's packet and forwards it to the layer's subscribers. It is
// called from the one goroutine reading this RTP stream; payload may be reused after it returns.
func (l *Layer) WriteRTP(seq uint16, ts uint32, marker bool, payload []byte, paddingOnly bool) {
	now := nanotime()
	kf := !paddingOnly && l.detect(payload, ts)
	if kf {
		l.keyframes.Add(1)
		l.lastKeyframe.Store(now)
	}
	p := l.ring.put(packet{seq: seq, timestamp: ts, marker: marker, keyframe: kf, padding: paddingOnly, arrival: now, epoch: l.epoch.Load()}, payload)
	l.bytes.Add(uint64(len(payload)))
	l.packets.Add(1)
	subs := *l.subs.Load()
	l.fanout(subs, p)
	observeHop(now, len(subs))
}

// hopObserver is told, for each packet with subscribers, how long it took from arriving at
// a layer to being handed to the last of them (seconds): the SFU's hop, without the
// socket's queue. One clock read per packet, none per subscriber.
var hopObserver atomic.Pointer[func(seconds float64)]

// ObserveHops sets the hop observer of every layer in the process (nil: none).
func ObserveHops(f func(seconds float64)) {
	if f == nil {
		hopObserver.Store(nil)
		return
	}
	hopObserver.Store(&f)
}

func observeHop(arrival int64, subscribers int) {
	if f := hopObserver.Load(); f != nil && subscribers > 0 {
		(*f)(float64(nanotime()-arrival) / 1e9)
	}
}

// SetAudioLevel records the level (RFC 6464, -dBov) of an audio packet. The loudest since the
// room last looked is kept: a short sound between two looks (a word's stress, a beep) counts,
// and a stream that stops sending reads as silence rather than as its last packet.
func (l *Layer) SetAudioLevel(level uint8) {
	level &= 0x7f
	for {
		cur := l.audioLevel.Load()
		if int32(level) >= cur || l.audioLevel.CompareAndSwap(cur, int32(level)) {
			return
		}
	}
}

// takeAudioLevel returns the loudest level since the last call and starts over at silence.
func (l *Layer) takeAudioLevel() uint8 { return uint8(l.audioLevel.Swap(127)) }

// WriteAccessUnit packetizes one encoded H.264 access unit of the appliance's own camera and
// forwards it. All layers of a track share the track's clock, so timestamps line up across
// layers. It is called from one goroutine, the encoder's.
func (l *Layer) WriteAccessUnit(au media.AccessUnit) {
	ts := l.track.mediaTime(au.CaptureTime)
	if int32(ts-l.lastTS) < 0 { // a capture clock that steps back must not reorder the stream
		ts = l.lastTS
	}
	l.lastTS = ts
	payloads := l.payloader.Payload(rtpMTU, au.Data)
	now := nanotime()
	if au.Keyframe {
		l.keyframes.Add(1)
		l.lastKeyframe.Store(now)
	}
	subs := *l.subs.Load()
	for i, payload := range payloads {
		p := l.ring.put(packet{
			seq: l.seq, timestamp: ts, marker: i == len(payloads)-1,
			keyframe: au.Keyframe && i == 0, arrival: now,
		}, payload)
		l.seq++
		l.bytes.Add(uint64(len(payload)))
		l.fanout(subs, p)
		observeHop(now, len(subs)) // from the access unit's arrival: later packets wait for earlier ones
		if i == 0 {
			l.latency.record(time.Since(au.CaptureTime))
		}
	}
	l.packets.Add(uint64(len(payloads)))
}

// CaptureToRTP summarizes how long recent pictures took from capture until their first RTP
// packet was handed to every subscriber.
func (l *Layer) CaptureToRTP() Latency { return l.latency.summary() }

// RequestKeyframe asks the layer's producer for a keyframe to repair a subscriber's picture
// (PLI/FIR), at most once per keyframeRequestGap: a request within the gap is served at its
// end, once. It never blocks.
func (l *Layer) RequestKeyframe() {
	l.repair.request(keyframeRequestGap, func() {
		if f := l.track.keyframeRequester(false); f != nil {
			f(l)
		}
	})
}

// RequestStartKeyframe asks for a keyframe a subscriber starts on (joining, switching to this
// layer, or after its producer changed), at most once per startKeyframeGap: joins are what
// the wait is felt in, so they get the shorter gap, and a crowd joining at once still shares
// keyframes.
func (l *Layer) RequestStartKeyframe() {
	l.start.request(startKeyframeGap, func() {
		if f := l.track.keyframeRequester(true); f != nil {
			f(l)
		}
	})
}

// throttle lets a call through at most once per gap; a call within the gap runs at its end.
type throttle struct {
	last     atomic.Int64 // monotonic ns; 0 before the first call
	deferred atomic.Bool  // a call waits for the end of the gap
}

func (t *throttle) request(gap time.Duration, fire func()) {
	now := nanotime()
	last := t.last.Load()
	if wait := last + int64(gap) - now; last != 0 && wait > 0 {
		if t.deferred.CompareAndSwap(false, true) {
			time.AfterFunc(time.Duration(wait), func() {
				t.deferred.Store(false)
				t.request(gap, fire)
			})
		}
		return
	}
	if t.last.CompareAndSwap(last, now) {
		fire()
	}
}

// Subscribers is how many down tracks receive this layer now.
func (l *Layer) Subscribers() int { return len(*l.subs.Load()) }

func (l *Layer) addSub(d *DownTrack) {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	old := *l.subs.Load()
	for _, s := range old {
		if s == d {
			return
		}
	}
	next := make([]*DownTrack, 0, len(old)+1)
	next = append(append(next, old...), d)
	l.subs.Store(&next)
	l.track.layersChanged()
}

func (l *Layer) removeSub(d *DownTrack) {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	old := *l.subs.Load()
	next := make([]*DownTrack, 0, len(old))
	for _, s := range old {
		if s != d {
			next = append(next, s)
		}
	}
	if len(next) != len(old) {
		l.subs.Store(&next)
		l.track.layersChanged()
	}
}

// measure updates the bitrate from the bytes seen since the last call.
func (l *Layer) measure(elapsed time.Duration) {
	b := l.bytes.Load()
	bps := int64(float64(b-l.lastBytes) * 8 / elapsed.Seconds())
	l.lastBytes = b
	if old := l.bitrate.Load(); old > 0 {
		bps = (old + bps) / 2 // smooth a little: keyframes make single windows jumpy
	}
	l.bitrate.Store(bps)
}

var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }
