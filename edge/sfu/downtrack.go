package sfu

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu/bwe"
)

// DownTrack is one subscriber's view of a Track: a webrtc.TrackLocal that pion binds to the
// subscriber's peer connection. It forwards one layer at a time, switches layers only on a
// keyframe of the new one, and rewrites sequence numbers and timestamps so the subscriber
// sees one continuous stream through switches and publisher restarts.
type DownTrack struct {
	track      *Track
	Subscriber string

	mu            sync.Mutex // guards everything below; layers' goroutines and NACK answers write
	writer        webrtc.TrackLocalWriter
	ssrc          uint32
	payloadType   uint8
	clockRate     uint32
	current       *Layer // the layer being forwarded; nil before the first keyframe
	pending       *Layer // the layer to switch to at its next keyframe
	started       bool
	epoch         uint32 // the producer generation of the current layer's packets
	lastSeq       uint16 // last sequence number sent (subscriber's numbering)
	lastTS        uint32
	lastArrival   int64
	lastSent      int64  // nanotime the newest packet sent arrived, for sender reports
	payloadOctets uint32 // payload bytes sent, for sender reports
	seqDelta      uint16 // out = in + seqDelta, for the current layer
	tsDelta       uint32
	segments      [4]segment // recent layer switches, to map NACKed numbers back to a layer
	hdr           rtp.Header // reused for every packet: no allocation per forwarded packet
	// RTX (RFC 4588) when the subscriber negotiated it: retransmissions go on their own SSRC.
	rtxSSRC        uint32
	rtxPayloadType uint8
	rtxSeq         uint16
	rtxBuf         []byte
	vp8            *vp8Munger // VP8: PictureID, TL0PICIDX and KEYIDX continue across switches
	// Transport-wide congestion control, when the subscriber negotiated its header
	// extension: every packet sent carries the connection's transport-wide sequence number,
	// and the subscriber's feedback on them drives the connection's estimator.
	transport    *bwe.Estimator // shared by the connection's down tracks; set before Bind
	twccID       uint8          // negotiated extension ID, 0 when not negotiated
	twccSeq      [2]byte
	padFrom      *packet // the packet forwarded last, which padding probes copy (ring-owned)
	closed       bool
	resendTokens float64 // retransmission budget (token bucket)
	resendLast   int64

	// Layer choice, owned by Allocate (one goroutine: the subscriber's RTCP reader or ticker).
	maxQuality Quality
	estimate   int     // subscriber's bandwidth share for this track, bit/s; 0 = unknown
	loss       float64 // fraction lost in the latest receiver report
	probe      probeState
	onLayer    func(*Layer) // told when the forwarded layer changes

	PacketsSent, BytesSent, Nacks, Retransmits, Switches, Padding atomic.Uint64
}

// segment says that from out sequence number outStart on, packets came from layer with seqDelta.
type segment struct {
	outStart uint16
	layer    *Layer
	seqDelta uint16
	tsDelta  uint32
	vp8      vp8Delta
	epoch    uint32 // the producer generation the segment's packets came from
}

var _ webrtc.TrackLocal = (*DownTrack)(nil)

// NewDownTrack makes a subscriber's down track. onLayer (may be nil) is called, outside any
// lock of the track, when the forwarded layer changes.
func NewDownTrack(t *Track, subscriber string, onLayer func(*Layer)) *DownTrack {
	d := &DownTrack{track: t, Subscriber: subscriber, maxQuality: High, tsDelta: rand.Uint32(), onLayer: onLayer,
		resendTokens: resendRate, resendLast: nanotime()}
	if strings.EqualFold(t.Codec.MimeType, webrtc.MimeTypeVP8) {
		d.vp8 = &vp8Munger{}
	}
	return d
}

// UseTransportCC makes the down track stamp its packets for e, the estimator of its
// subscriber's connection, if the connection negotiates transport-wide congestion control.
// Call before the track is bound.
func (d *DownTrack) UseTransportCC(e *bwe.Estimator) { d.transport = e }

// Track is the published track this down track receives.
func (d *DownTrack) Track() *Track { return d.track }

// Bind implements webrtc.TrackLocal: pick our codec among the negotiated ones and start
// receiving packets. Until a keyframe comes, nothing is sent.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := pickCodec(d.track.Codec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, fmt.Errorf("bind %s (%s): %w", d.track.ID, d.track.Codec.MimeType, webrtc.ErrUnsupportedCodec)
	}
	d.mu.Lock()
	d.writer = ctx.WriteStream()
	d.ssrc = uint32(ctx.SSRC())
	d.payloadType = uint8(codec.PayloadType)
	if rtx, ok := rtxFor(codec.PayloadType, ctx.CodecParameters()); ok && ctx.SSRCRetransmission() != 0 {
		d.rtxSSRC, d.rtxPayloadType, d.rtxSeq = uint32(ctx.SSRCRetransmission()), uint8(rtx), uint16(rand.Uint32())
	}
	d.clockRate = codec.ClockRate
	d.twccID = 0
	if d.transport != nil {
		for _, ext := range ctx.HeaderExtensions() {
			if ext.URI == sdp.TransportCCURI && ext.ID > 0 && ext.ID < 15 {
				d.twccID = uint8(ext.ID)
			}
		}
	}
	d.mu.Unlock()
	d.Allocate()
	return codec, nil
}

// pickCodec finds the negotiated codec matching the track's; for H.264 the same
// packetization mode, preferring the same profile.
func pickCodec(want webrtc.RTPCodecCapability, offered []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i, c := range offered {
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		if !strings.EqualFold(want.MimeType, webrtc.MimeTypeH264) {
			return c, true
		}
		if !strings.Contains(c.SDPFmtpLine, "packetization-mode=1") {
			continue
		}
		if profile(c.SDPFmtpLine) == profile(want.SDPFmtpLine) {
			return c, true
		}
		if fallback == nil {
			fallback = &offered[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

// rtxFor finds the negotiated RTX payload type whose apt is pt.
func rtxFor(pt webrtc.PayloadType, codecs []webrtc.RTPCodecParameters) (webrtc.PayloadType, bool) {
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && fmtpValue(c.SDPFmtpLine, "apt") == fmt.Sprint(pt) {
			return c.PayloadType, true
		}
	}
	return 0, false
}

// fmtpValue is one parameter of an fmtp line, or "".
func fmtpValue(fmtp, key string) string {
	for kv := range strings.SplitSeq(fmtp, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// profile is the H.264 profile (profile_idc and constraint flags) of an fmtp line, without
// the level: a subscriber that can decode the profile gets any level.
func profile(fmtp string) string {
	if v := fmtpValue(fmtp, "profile-level-id"); len(v) == 6 {
		return strings.ToLower(v[:4])
	}
	return ""
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.Close()
	return nil
}

// Close detaches the down track from its layers; it forwards nothing more.
func (d *DownTrack) Close() {
	d.mu.Lock()
	d.writer, d.closed = nil, true
	cur, pend := d.current, d.pending
	d.current, d.pending = nil, nil
	d.mu.Unlock()
	for _, l := range []*Layer{cur, pend} {
		if l != nil {
			l.removeSub(d)
		}
	}
}

// ID, RID, StreamID and Kind implement webrtc.TrackLocal. The stream is the publisher, so
// a subscriber sees one MediaStream per participant.
func (d *DownTrack) ID() string                { return d.track.ID }
func (d *DownTrack) RID() string               { return "" }
func (d *DownTrack) StreamID() string          { return d.track.Participant }
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.track.Kind }

// Layer is the layer being forwarded now (nil before the first keyframe).
func (d *DownTrack) Layer() *Layer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// forward sends one packet of layer l, called from that layer's goroutine.
func (d *DownTrack) forward(l *Layer, p *packet) {
	d.mu.Lock()
	if d.writer == nil || d.track.muted.Load() {
		d.mu.Unlock()
		return
	}
	if l == d.pending && p.keyframe && p.arrival >= d.probe.holdUntil { // holdUntil: allocator.go
		old := d.switchLocked(l, p)
		d.mu.Unlock()
		if old != nil {
			old.removeSub(d)
		}
		if old != l && d.onLayer != nil {
			d.onLayer(l)
		}
		return
	}
	if l == d.current && d.started && !d.probe.held {
		if p.epoch != d.epoch {
			// A new producer took the track over: its numbering starts afresh, so wait
			// for its keyframe and continue our own numbering from there.
			ask := d.pending != l
			d.pending = l
			if p.keyframe {
				d.switchLocked(l, p)
			} else if ask {
				go l.RequestStartKeyframe()
			}
			d.mu.Unlock()
			return
		}
		if d.probe.padding != nil {
			d.padLocked(p)
		}
		d.writeLocked(p, false)
		d.padFrom = p
	}
	d.mu.Unlock()
}

// padLocked sends, ahead of packet p, as many RTX copies of the packet forwarded before it
// as a padding probe needs (allocator.go): real packets, which the subscriber drops as
// duplicates, measure the link as well as padding does and cost no memory. Copies go
// first so that every burst ends with a media packet: a browser addresses its
// transport-wide feedback to the SSRC it received last, and pion delivers no RTCP
// addressed to an RTX SSRC.
func (d *DownTrack) padLocked(p *packet) {
	pr := &d.probe
	src := d.padFrom
	if src == nil || src.epoch != d.epoch || src.seq+d.seqDelta != d.lastSeq {
		return // nothing of the current layer sent yet, or its ring slot holds a later packet now
	}
	size := float64(len(p.payload))
	pr.padCredit += size * pr.padRatio
	for range maxPadRatio {
		if size == 0 || pr.padCredit < size {
			break
		}
		pr.padCredit -= size
		if n, _ := d.writeLocked(src, true); n > 0 {
			d.Padding.Add(1)
		}
	}
}

// switchLocked makes l the forwarded layer from its keyframe p on, and returns the layer
// left behind (to be detached outside the lock).
func (d *DownTrack) switchLocked(l *Layer, p *packet) *Layer {
	prevSeqDelta, prevTSDelta := d.seqDelta, d.tsDelta
	var prevVP8 vp8Delta
	if d.vp8 != nil {
		prevVP8 = d.vp8.delta
		if d.started {
			d.vp8.switchTo(p.payload)
		}
	}
	if d.started {
		// Continue the subscriber's numbering and clock: next sequence number, and a
		// timestamp advanced by the wall-clock time since the last packet sent.
		d.seqDelta = d.lastSeq + 1 - p.seq
		step := uint32(max(1, (p.arrival-d.lastArrival)*int64(d.clockRate)/int64(time.Second)))
		d.tsDelta = d.lastTS + step - p.timestamp
	} else {
		d.seqDelta = uint16(rand.Uint32()) - p.seq
	}
	if n, err := d.writeLocked(p, false); n == 0 && err == nil {
		// pion drops packets until SRTP is up (0 bytes, no error): starting on this keyframe
		// would leave the subscriber with none, so wait for another.
		d.seqDelta, d.tsDelta = prevSeqDelta, prevTSDelta
		if d.vp8 != nil {
			d.vp8.delta = prevVP8
		}
		go l.RequestStartKeyframe()
		return nil
	}
	old := d.current
	d.current, d.pending, d.started, d.epoch = l, nil, true, p.epoch
	d.padFrom = nil // a packet of the layer left would be numbered wrongly
	d.probe.held = false
	copy(d.segments[1:], d.segments[:len(d.segments)-1])
	d.segments[0] = segment{outStart: p.seq + d.seqDelta, layer: l, seqDelta: d.seqDelta, tsDelta: d.tsDelta, epoch: p.epoch}
	if d.vp8 != nil {
		d.segments[0].vp8 = d.vp8.delta
	}
	if old != nil && old != l {
		d.Switches.Add(1)
	}
	if old == l {
		return nil
	}
	return old
}

func (d *DownTrack) writeLocked(p *packet, resend bool) (int, error) {
	seq, ts := p.seq+d.seqDelta, p.timestamp+d.tsDelta
	exts := d.hdr.Extensions[:0] // kept: stamping reuses its backing array
	d.hdr = rtp.Header{
		Version:        2,
		Padding:        p.padding,
		Marker:         p.marker,
		PayloadType:    d.payloadType,
		SequenceNumber: seq,
		Timestamp:      ts,
		SSRC:           d.ssrc,
	}
	newest := !resend && (!d.started || int16(seq-d.lastSeq) > 0)
	payload := p.payload
	if d.vp8 != nil && !p.padding {
		payload = d.vp8.rewrite(payload, newest)
	}
	if resend && d.rtxSSRC != 0 {
		// RFC 4588: a retransmission on its own stream, the original sequence number first,
		// so the subscriber's loss statistics and bandwidth estimate tell it from new media.
		d.hdr.SSRC, d.hdr.PayloadType, d.hdr.SequenceNumber = d.rtxSSRC, d.rtxPayloadType, d.rtxSeq
		d.rtxSeq++
		d.rtxBuf = append(append(d.rtxBuf[:0], byte(seq>>8), byte(seq)), payload...)
		payload = d.rtxBuf
	}
	if d.twccID != 0 {
		// Retransmissions and padding count too: they use the link like media does.
		tseq := d.transport.Sent(twccOverhead+len(payload), nanotime())
		d.twccSeq = [2]byte{byte(tseq >> 8), byte(tseq)}
		d.hdr.Extensions = exts
		_ = d.hdr.SetExtension(d.twccID, d.twccSeq[:]) // ID checked at Bind: cannot fail
	}
	n, err := d.writer.WriteRTP(&d.hdr, payload)
	if n > 0 {
		d.PacketsSent.Add(1)
		d.BytesSent.Add(uint64(n))
	}
	if newest {
		d.lastSeq, d.lastTS, d.lastArrival = seq, ts, p.arrival
		d.lastSent = p.arrival // forwarding follows arrival within microseconds; no clock read per packet
		if n > 0 {
			d.payloadOctets += uint32(len(payload))
		}
	}
	// A failed write is a subscriber going away; its connection's state handler cleans up.
	return n, err
}

// twccOverhead is what a packet takes on the wire besides its payload: the RTP header with
// the transport-wide sequence number extension, and the SRTP authentication tag.
const twccOverhead = 12 + 8 + 16

// restart makes the down track wait for a keyframe again (after a mute), keeping its numbering.
func (d *DownTrack) restart() {
	d.mu.Lock()
	if d.current != nil && d.pending == nil {
		d.pending = d.current
	}
	l := d.pending
	d.mu.Unlock()
	if l != nil {
		l.RequestStartKeyframe()
	}
}

// HandleRTCP acts on the subscriber's feedback for this track: picture loss asks for a
// keyframe, NACKs are answered from the layer's shared cache, receiver reports and REMB feed
// the layer choice (REMB is per connection: the caller passes its share as estimate).
func (d *DownTrack) HandleRTCP(pkts []rtcp.Packet) {
	for _, pkt := range pkts {
		switch pkt := pkt.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.RequestKeyframe() // of the layer it waits for, if any: that is what it will get
		case *rtcp.TransportLayerCC:
			// Feedback on the whole connection, sent on whichever of its tracks; bad
			// feedback is ignored by the estimator and changes nothing.
			if d.transport != nil {
				_ = d.transport.Feedback(pkt, nanotime())
			}
		case *rtcp.TransportLayerNack:
			asked := 0
			for _, pair := range pkt.Nacks {
				for _, seq := range pair.PacketList() {
					d.Nacks.Add(1)
					if asked++; asked > maxNackedPerReport {
						continue // a huge NACK list must not turn the SFU into an amplifier
					}
					if d.resend(seq) {
						d.Retransmits.Add(1)
					}
				}
			}
		case *rtcp.ReceiverReport:
			for _, r := range pkt.Reports {
				if r.SSRC == d.ssrcNow() {
					d.mu.Lock()
					d.loss = float64(r.FractionLost) / 256
					d.mu.Unlock()
					d.noteRTT(r, time.Now()) // allocator.go
				}
			}
		}
	}
}

func (d *DownTrack) ssrcNow() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ssrc
}

// Retransmission limits: per NACK report, and a token bucket per subscriber (a real loss
// burst of a 2 Mbit/s stream is far below either).
const (
	maxNackedPerReport = 256
	resendRate         = 400 // packets per second
)

// resend retransmits the packet the subscriber numbered outSeq, from the cache of the layer
// it came from.
func (d *DownTrack) resend(outSeq uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil || !d.started || int16(outSeq-d.lastSeq) > 0 {
		return false
	}
	now := nanotime()
	rate := d.resendRateLocked() // bounded by the subscriber's estimate (allocator.go)
	d.resendTokens = min(rate, d.resendTokens+float64(now-d.resendLast)*rate/1e9)
	d.resendLast = now
	if d.resendTokens < 1 {
		return false
	}
	for _, seg := range d.segments {
		if seg.layer == nil || int16(outSeq-seg.outStart) < 0 {
			continue
		}
		if !d.worthResendingLocked(seg) { // allocator.go; costs no token
			return false
		}
		d.resendTokens--
		seqDelta, tsDelta := d.seqDelta, d.tsDelta
		d.seqDelta, d.tsDelta = seg.seqDelta, seg.tsDelta
		var vp8 vp8Delta
		if d.vp8 != nil {
			vp8, d.vp8.delta = d.vp8.delta, seg.vp8
		}
		ok := false
		seg.layer.ring.with(outSeq-seg.seqDelta, func(p *packet) {
			if ok = p.epoch == seg.epoch; ok { // not a packet of a later producer that reused the number
				_, _ = d.writeLocked(p, true)
			}
		})
		d.seqDelta, d.tsDelta = seqDelta, tsDelta
		if d.vp8 != nil {
			d.vp8.delta = vp8
		}
		return ok
	}
	return false
}

// SenderReport describes what the down track sent, for the subscriber's lip sync and round
// trip (RFC 3550 6.4.1): its clock is mapped to now by extending the last timestamp sent
// by the time since. ok is false before the first packet.
func (d *DownTrack) SenderReport(now time.Time) (sr *rtcp.SenderReport, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started || d.writer == nil || d.lastSent == 0 {
		return nil, false
	}
	since := max(0, nanotime()-d.lastSent)
	return &rtcp.SenderReport{
		SSRC:        d.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     d.lastTS + uint32(since*int64(d.clockRate)/int64(time.Second)),
		PacketCount: uint32(d.PacketsSent.Load()),
		OctetCount:  d.payloadOctets,
	}, true
}

// ntpTime is t as a 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point).
func ntpTime(t time.Time) uint64 {
	return uint64(t.Unix()+2208988800)<<32 | uint64(t.Nanosecond())<<32/1e9
}

// RequestKeyframe asks for a keyframe of the layer waited for (a start: sooner) or, when
// none, of the layer being forwarded (a repair).
func (d *DownTrack) RequestKeyframe() {
	d.mu.Lock()
	pending, current := d.pending, d.current
	d.mu.Unlock()
	switch {
	case pending != nil:
		pending.RequestStartKeyframe()
	case current != nil:
		current.RequestKeyframe()
	}
}

// TransportCC says whether the subscriber negotiated transport-wide congestion control for
// this track: its packets carry transport-wide sequence numbers.
func (d *DownTrack) TransportCC() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.twccID != 0
}

// Probing is the layer a padding probe is trying now, or nil.
func (d *DownTrack) Probing() *Layer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.probe.padding
}

// Loss is the fraction of packets the subscriber reported lost most recently.
func (d *DownTrack) Loss() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loss
}
