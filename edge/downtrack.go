package edge

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// downTrack is one subscriber's view of a Track: a webrtc.TrackLocal that pion binds to a
// peer connection. It starts on a keyframe and renumbers packets so that its stream is
// contiguous from wherever it joined.
type downTrack struct {
	track *Track

	mu          sync.Mutex // guards everything below; forward and NACK answers both write
	writer      webrtc.TrackLocalWriter
	ssrc        uint32
	payloadType uint8
	started     bool
	seqDelta    uint16 // out = in + seqDelta
	tsDelta     uint32
	hdr         rtp.Header // reused for every packet: no allocation per forwarded packet
}

var _ webrtc.TrackLocal = (*downTrack)(nil)

func newDownTrack(t *Track) *downTrack {
	return &downTrack{track: t, tsDelta: rand.Uint32()}
}

// Bind implements webrtc.TrackLocal: pick our codec among the negotiated ones and start
// receiving packets. Until a keyframe comes, nothing is sent. pion binds an answerer's tracks
// before ICE and DTLS have even started, so the keyframe is asked for later, in connected.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := pickH264(ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, fmt.Errorf("bind %s: %w", d.track.id, webrtc.ErrUnsupportedCodec)
	}
	d.mu.Lock()
	d.writer = ctx.WriteStream()
	d.ssrc = uint32(ctx.SSRC())
	d.payloadType = uint8(codec.PayloadType)
	d.mu.Unlock()
	d.track.addSub(d)
	return codec, nil
}

// connected is called when the viewer's connection is up: now a keyframe will reach it.
func (d *downTrack) connected() { d.track.requestKeyframe() }

// pickH264 prefers packetization mode 1 with the constrained-baseline profile.
func pickH264(codecs []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i, c := range codecs {
		if !strings.EqualFold(c.MimeType, webrtc.MimeTypeH264) || !strings.Contains(c.SDPFmtpLine, "packetization-mode=1") {
			continue
		}
		if strings.Contains(c.SDPFmtpLine, "profile-level-id=42e0") {
			return c, true
		}
		if fallback == nil {
			fallback = &codecs[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.track.removeSub(d)
	d.mu.Lock()
	d.writer = nil
	d.mu.Unlock()
	return nil
}

// ID, RID, StreamID and Kind implement webrtc.TrackLocal.
func (d *downTrack) ID() string                { return d.track.id }
func (d *downTrack) RID() string               { return "" }
func (d *downTrack) StreamID() string          { return d.track.streamID }
func (d *downTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeVideo }

// forward sends one packet of the track, called from the track's goroutine.
func (d *downTrack) forward(p *packet) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil {
		return
	}
	if d.started {
		d.writeLocked(p)
		return
	}
	if !p.keyframeStart {
		return
	}
	d.seqDelta = uint16(rand.Uint32()) - p.seq
	if n, err := d.writeLocked(p); n == 0 && err == nil {
		// pion drops packets until SRTP is up (it reports 0 bytes, no error): starting on this
		// keyframe would leave the viewer with none, so wait for another.
		d.track.requestKeyframe()
		return
	}
	d.started = true
}

func (d *downTrack) writeLocked(p *packet) (int, error) {
	d.hdr = rtp.Header{
		Version:        2,
		Marker:         p.marker,
		PayloadType:    d.payloadType,
		SequenceNumber: p.seq + d.seqDelta,
		Timestamp:      p.timestamp + d.tsDelta,
		SSRC:           d.ssrc,
	}
	// A failed write is a viewer going away; its peer connection's state handler cleans up.
	return d.writer.WriteRTP(&d.hdr, p.payload)
}

// handleRTCP acts on the subscriber's feedback: picture loss asks the producer for a
// keyframe, NACKs are answered from the track's shared ring.
func (d *downTrack) handleRTCP(pkts []rtcp.Packet) (nacked, resent int) {
	for _, pkt := range pkts {
		switch pkt := pkt.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			d.track.requestKeyframe()
		case *rtcp.TransportLayerNack:
			for _, pair := range pkt.Nacks {
				for _, seq := range pair.PacketList() {
					nacked++
					if d.resend(seq) {
						resent++
					}
				}
			}
		}
	}
	return nacked, resent
}

func (d *downTrack) resend(outSeq uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil || !d.started {
		return false
	}
	return d.track.ring.with(outSeq-d.seqDelta, func(p *packet) { _, _ = d.writeLocked(p) })
}
