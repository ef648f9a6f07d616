package main

// rtpInfo is the part of an RTP packet a viewer looks at.
type rtpInfo struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
}

// parseRTP reads an RTP header (RFC 3550 5.1) without allocating: version, marker, sequence
// number, timestamp, and the payload after CSRCs, header extension and padding.
func parseRTP(b []byte) (rtpInfo, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return rtpInfo{}, false
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // header extension: 4 bytes, then length 32-bit words
		if len(b) < n+4 {
			return rtpInfo{}, false
		}
		n += 4 + 4*(int(b[n+2])<<8|int(b[n+3]))
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding: the last byte says how much
		end -= int(b[len(b)-1])
	}
	if n > end {
		return rtpInfo{}, false
	}
	return rtpInfo{
		seq:     uint16(b[2])<<8 | uint16(b[3]),
		ts:      uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]),
		marker:  b[1]&0x80 != 0,
		payload: b[n:end],
	}, true
}

// H.264 NAL unit types (RFC 6184) the detector needs.
const (
	nalIDR   = 5
	nalSTAPA = 24
	nalFUA   = 28
	nalFUB   = 29
)

// h264Payload classifies one RTP payload of H.264 (RFC 6184, packetization mode 1): whether
// it begins a NAL unit (anything but a non-first FU fragment) and whether it carries the start
// of an IDR slice (single NAL, inside a STAP-A, or the first FU-A fragment).
func h264Payload(p []byte) (startsNAL, idr bool) {
	if len(p) == 0 {
		return false, false
	}
	switch t := p[0] & 0x1f; t {
	case nalSTAPA:
		for i := 1; i+2 <= len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				break
			}
			if p[i]&0x1f == nalIDR {
				idr = true
			}
			i += size
		}
		return true, idr
	case nalFUA, nalFUB:
		if len(p) < 2 {
			return false, false
		}
		start := p[1]&0x80 != 0
		return start, start && p[1]&0x1f == nalIDR
	default:
		return true, t == nalIDR
	}
}

// kfRingSize bounds the access units the detector can see whole: 512 packets of 1200 bytes is
// a 600 KB picture, far above any 720p or 1080p IDR at WebRTC bitrates.
const kfRingSize = 512

type kfEntry struct {
	seq                           uint16
	ts                            uint32
	valid, marker, startsNAL, idr bool
}

// keyframeDetector says when the first complete IDR access unit has arrived: a run of
// consecutive sequence numbers with one RTP timestamp that begins with a NAL unit right after
// the previous picture (or at the first packet of the stream), contains the start of an IDR
// slice, and ends with the marker bit. Packets may arrive in any order; nothing is decoded.
type keyframeDetector struct {
	ring   [kfRingSize]kfEntry
	first  uint16 // lowest sequence number seen, in RTP order
	seeded bool
}

func (d *keyframeDetector) at(seq uint16) *kfEntry {
	e := &d.ring[int(seq)%kfRingSize]
	if !e.valid || e.seq != seq {
		return nil
	}
	return e
}

// push records a packet and reports whether it completed a keyframe access unit.
func (d *keyframeDetector) push(p rtpInfo) bool {
	if !d.seeded || int16(p.seq-d.first) < 0 {
		d.first, d.seeded = p.seq, true
	}
	if d.at(p.seq) != nil {
		return false // duplicate
	}
	startsNAL, idr := h264Payload(p.payload)
	d.ring[int(p.seq)%kfRingSize] = kfEntry{seq: p.seq, ts: p.ts, valid: true, marker: p.marker, startsNAL: startsNAL, idr: idr}

	// Forward to the marker: every packet up to it must be here.
	last := p.seq
	for n := 0; ; n++ {
		e := d.at(last)
		if e == nil || e.ts != p.ts || n >= kfRingSize {
			return false
		}
		if e.marker {
			break
		}
		last++
	}
	// Back to the first packet of this picture.
	first := p.seq
	for n := 0; n < kfRingSize; n++ {
		prev := d.at(first - 1)
		if prev == nil {
			if first != d.first {
				return false // a gap: the missing packet may belong to this picture
			}
			break
		}
		if prev.ts != p.ts {
			break
		}
		first--
	}
	if !d.at(first).startsNAL {
		return false
	}
	for s := first; ; s++ {
		if d.at(s).idr {
			return true
		}
		if s == last {
			return false
		}
	}
}
