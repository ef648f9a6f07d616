package sfu

// VP8 numbering across layer switches. Each simulcast layer is its own encoder with its own
// PictureID, TL0PICIDX and KEYIDX (RFC 7741, section 4.2). A subscriber sees one stream, so
// after a switch these continue from the last ones it was sent, like the sequence numbers
// and timestamps: a receiver that saw PictureID jump backwards takes the new layer's frames
// for old ones and drops them (Chromium does, keyframe included), and the picture freezes
// until the new layer's numbers pass the old ones.

// vp8Fields are the byte offsets of a VP8 payload descriptor's rewritable fields, -1 when
// absent.
type vp8Fields struct {
	pic, tl0, key int
	longPic       bool // 15-bit PictureID (M bit)
}

// parseVP8 finds the fields; ok is false for a descriptor shorter than its flags say.
func parseVP8(p []byte) (f vp8Fields, ok bool) {
	f = vp8Fields{pic: -1, tl0: -1, key: -1}
	if len(p) < 1 {
		return f, false
	}
	if p[0]&0x80 == 0 { // no X: nothing to rewrite
		return f, true
	}
	if len(p) < 2 {
		return f, false
	}
	x, i := p[1], 2
	if x&0x80 != 0 { // I: PictureID
		if len(p) <= i {
			return f, false
		}
		f.pic, f.longPic = i, p[i]&0x80 != 0
		if f.longPic {
			i++
		}
		i++
	}
	if x&0x40 != 0 { // L: TL0PICIDX
		f.tl0 = i
		i++
	}
	if x&0x30 != 0 { // T or K: TID|Y|KEYIDX
		if x&0x10 != 0 {
			f.key = i
		}
		i++
	}
	return f, len(p) >= i
}

func (f vp8Fields) picture(p []byte) uint16 {
	if f.longPic {
		return uint16(p[f.pic]&0x7f)<<8 | uint16(p[f.pic+1])
	}
	return uint16(p[f.pic] & 0x7f)
}

// vp8Delta is what is added to a layer's numbers: PictureID modulo its width, TL0PICIDX
// modulo 256, KEYIDX modulo 32.
type vp8Delta struct {
	pic      uint16
	tl0, key uint8
}

// vp8Munger keeps one subscriber's VP8 numbering continuous. It is used under the down
// track's lock.
type vp8Munger struct {
	delta vp8Delta // for the layer being forwarded
	sent  bool     // last holds what the subscriber was last sent
	last  vp8Delta // the newest PictureID, TL0PICIDX and KEYIDX sent (subscriber's numbering)
	buf   []byte
}

// switchTo sets the delta so that p, the keyframe starting a new layer, continues from the
// last picture sent.
func (m *vp8Munger) switchTo(p []byte) {
	f, ok := parseVP8(p)
	if !ok || !m.sent {
		return
	}
	if f.pic >= 0 {
		mask := uint16(0x7f)
		if f.longPic {
			mask = 0x7fff
		}
		m.delta.pic = (m.last.pic + 1 - f.picture(p)) & mask
	}
	if f.tl0 >= 0 {
		m.delta.tl0 = m.last.tl0 + 1 - p[f.tl0]
	}
	if f.key >= 0 {
		m.delta.key = (m.last.key + 1 - p[f.key]) & 0x1f
	}
}

// rewrite returns p with the delta applied, in a buffer reused by the next call. newest
// says p is the newest packet sent (not a retransmission), so its numbers are the last.
func (m *vp8Munger) rewrite(p []byte, newest bool) []byte {
	f, ok := parseVP8(p)
	if !ok || f.pic < 0 && f.tl0 < 0 && f.key < 0 {
		return p
	}
	m.buf = append(m.buf[:0], p...)
	b := m.buf
	last := m.last
	if f.pic >= 0 {
		if f.longPic {
			v := (f.picture(b) + m.delta.pic) & 0x7fff
			b[f.pic], b[f.pic+1] = 0x80|byte(v>>8), byte(v)
			last.pic = v
		} else {
			v := (f.picture(b) + m.delta.pic) & 0x7f
			b[f.pic] = byte(v)
			last.pic = v
		}
	}
	if f.tl0 >= 0 {
		b[f.tl0] += m.delta.tl0
		last.tl0 = b[f.tl0]
	}
	if f.key >= 0 {
		b[f.key] = b[f.key]&0xe0 | (b[f.key]+m.delta.key)&0x1f
		last.key = b[f.key] & 0x1f
	}
	if newest {
		m.last, m.sent = last, true
	}
	return b
}
