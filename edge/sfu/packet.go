package sfu

import "sync"

// ringSize is how many packets of a layer are kept for retransmission: about 5 s of a
// 2 Mbit/s stream. One ring per published layer, shared by all of its subscribers.
const ringSize = 1024

// packet is one RTP packet of a published layer, in the publisher's own numbering.
// Subscribers rewrite SSRC, payload type, sequence number and timestamp when they send it.
type packet struct {
	seq       uint16
	timestamp uint32
	marker    bool
	keyframe  bool   // first packet of a keyframe: a subscriber may start or switch layers here
	padding   bool   // payload is RTP padding only (a sender's probe); forwarded to keep numbering whole
	arrival   int64  // monotonic nanoseconds, for timestamp continuity across layer switches
	epoch     uint32 // the layer's producer generation (Track.Adopt)
	payload   []byte
}

// packetRing keeps the recent packets of one layer. The writer reuses each slot's payload
// buffer, so after warm-up storing a packet allocates nothing.
type packetRing struct {
	mu    sync.RWMutex
	slots [ringSize]packet
	valid [ringSize]bool
}

// put stores a copy of payload and returns the stored packet. The returned packet stays
// unchanged until ringSize more packets have been put: long enough for the writer's own
// fan-out, which runs before its next put.
func (r *packetRing) put(p packet, payload []byte) *packet {
	i := int(p.seq) % ringSize
	r.mu.Lock()
	slot := &r.slots[i]
	buf := append(slot.payload[:0], payload...)
	*slot = p
	slot.payload = buf
	r.valid[i] = true
	r.mu.Unlock()
	return slot
}

// with calls fn with the packet numbered seq while holding it against reuse, and reports
// whether the ring still had it.
func (r *packetRing) with(seq uint16, fn func(*packet)) bool {
	i := int(seq) % ringSize
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.valid[i] || r.slots[i].seq != seq {
		return false
	}
	fn(&r.slots[i])
	return true
}
