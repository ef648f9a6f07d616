// Package edge is the appliance's WebRTC side: published tracks, the subscribers that receive
// them, and the HTTP endpoints (WHEP, status, the web page) that let browsers in.
//
// A Track packetizes each access unit once into a ring shared by all subscribers; a subscriber
// only rewrites the RTP header on the way out. That keeps the cost per viewer to one encrypt
// and one write per packet, and lets an uplink to a central node be one more subscriber.
package edge

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/media"
)

// rtpMTU is the largest RTP payload we send, small enough for any path with a 1280-byte
// IPv6 minimum MTU after SRTP, UDP, IP and TURN overheads.
const rtpMTU = 1200

const videoClockRate = 90000

// H264Codec is what the appliance sends: constrained baseline, packetization mode 1.
var H264Codec = webrtc.RTPCodecCapability{
	MimeType:    webrtc.MimeTypeH264,
	ClockRate:   videoClockRate,
	SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	RTCPFeedback: []webrtc.RTCPFeedback{
		{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
		{Type: "goog-remb"}, // browsers then send their bandwidth estimate, which drives the encoder
	},
}

// Track is a published H.264 video track.
type Track struct {
	id, streamID string
	// requestKeyframe is how subscribers' PLI/FIR reach whoever produces the track.
	requestKeyframe func()

	ring       packetRing
	payloader  codecs.H264Payloader
	seq        uint16
	start      time.Time
	lastTS     uint32
	subs       atomic.Pointer[[]*downTrack] // copied on change, read without a lock per packet
	subsMu     sync.Mutex
	latency    latencyWindow
	packetsOut atomic.Uint64
}

// NewTrack makes a track. requestKeyframe is called (from any goroutine) when a subscriber
// needs an IDR; it must not block.
func NewTrack(id, streamID string, requestKeyframe func()) *Track {
	t := &Track{id: id, streamID: streamID, requestKeyframe: requestKeyframe, seq: uint16(rand.Uint32())}
	t.subs.Store(&[]*downTrack{})
	return t
}

// WriteAccessUnit packetizes au once and sends it to every subscriber. It is called from one
// goroutine, the encoder's.
func (t *Track) WriteAccessUnit(au media.AccessUnit) {
	if t.start.IsZero() {
		t.start = au.CaptureTime
	}
	ts := uint32(au.CaptureTime.Sub(t.start) * videoClockRate / time.Second)
	if int32(ts-t.lastTS) < 0 { // a capture clock that steps back must not reorder the stream
		ts = t.lastTS
	}
	t.lastTS = ts
	payloads := t.payloader.Payload(rtpMTU, au.Data)
	subs := *t.subs.Load()
	for i, payload := range payloads {
		p := t.ring.put(packet{
			seq:           t.seq,
			timestamp:     ts,
			marker:        i == len(payloads)-1,
			keyframeStart: au.Keyframe && i == 0,
		}, payload)
		t.seq++
		for _, s := range subs {
			s.forward(p)
		}
		if i == 0 {
			t.latency.record(time.Since(au.CaptureTime))
		}
	}
	t.packetsOut.Add(uint64(len(payloads)))
}

// CaptureToRTP summarizes how long recent pictures took from capture until their first RTP
// packet was handed to every subscriber.
func (t *Track) CaptureToRTP() Latency { return t.latency.summary() }

// Subscribers is how many down tracks receive this track now.
func (t *Track) Subscribers() int { return len(*t.subs.Load()) }

func (t *Track) addSub(d *downTrack) {
	t.subsMu.Lock()
	defer t.subsMu.Unlock()
	old := *t.subs.Load()
	next := make([]*downTrack, 0, len(old)+1)
	next = append(append(next, old...), d)
	t.subs.Store(&next)
}

func (t *Track) removeSub(d *downTrack) {
	t.subsMu.Lock()
	defer t.subsMu.Unlock()
	old := *t.subs.Load()
	next := make([]*downTrack, 0, len(old))
	for _, s := range old {
		if s != d {
			next = append(next, s)
		}
	}
	t.subs.Store(&next)
}
