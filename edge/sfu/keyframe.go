package sfu

import "strings"

// Codec-specific knowledge the SFU needs: where a subscriber may start decoding. Everything
// else about the payload is opaque to it.

// keyframeDetector reports whether an RTP payload begins a keyframe a decoder can start on.
type keyframeDetector func(payload []byte, timestamp uint32) bool

// detectorFor returns the detector for a codec MIME type. Audio and unknown codecs can start
// on any packet.
func detectorFor(mimeType string) keyframeDetector {
	switch {
	case strings.EqualFold(mimeType, "video/H264"):
		var h h264Starts
		return h.isStart
	case strings.EqualFold(mimeType, "video/VP8"):
		return vp8Keyframe
	default:
		return func([]byte, uint32) bool { return true }
	}
}

// h264Starts finds the first packet of an IDR access unit: the one carrying its SPS, or the
// IDR slice itself when the sender put no SPS in front of it (a decoder that already has the
// parameter sets can still start there).
type h264Starts struct {
	spsTimestamp uint32
	spsSeen      bool
}

const (
	naluIDR   = 5
	naluSPS   = 7
	naluSTAPA = 24
	naluFUA   = 28
)

func (h *h264Starts) isStart(payload []byte, ts uint32) bool {
	if len(payload) < 1 {
		return false
	}
	switch typ := payload[0] & 0x1f; typ {
	case naluSPS:
		h.spsTimestamp, h.spsSeen = ts, true
		return true
	case naluIDR:
		return !h.sameAU(ts)
	case naluSTAPA:
		sps, idr := false, false
		for rest := payload[1:]; len(rest) > 2; {
			size := int(rest[0])<<8 | int(rest[1])
			if size == 0 || size > len(rest)-2 {
				break
			}
			switch rest[2] & 0x1f {
			case naluSPS:
				sps = true
			case naluIDR:
				idr = true
			}
			rest = rest[2+size:]
		}
		if sps {
			h.spsTimestamp, h.spsSeen = ts, true
			return true
		}
		return idr && !h.sameAU(ts)
	case naluFUA:
		if len(payload) < 2 {
			return false
		}
		start := payload[1]&0x80 != 0
		return start && payload[1]&0x1f == naluIDR && !h.sameAU(ts)
	}
	return false
}

// sameAU reports whether this access unit's SPS was already marked as its start.
func (h *h264Starts) sameAU(ts uint32) bool { return h.spsSeen && h.spsTimestamp == ts }

// vp8Keyframe parses the VP8 payload descriptor (RFC 7741) and the payload header: a packet
// starting partition 0 of a frame whose P bit is clear starts a keyframe.
func vp8Keyframe(payload []byte, _ uint32) bool {
	if len(payload) < 1 {
		return false
	}
	b := payload[0]
	start, pid := b&0x10 != 0, b&0x07
	i := 1
	if b&0x80 != 0 { // X: extension byte follows
		if len(payload) < 2 {
			return false
		}
		x := payload[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(payload) <= i {
				return false
			}
			if payload[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	if !start || pid != 0 || len(payload) <= i {
		return false
	}
	return payload[i]&0x01 == 0
}
