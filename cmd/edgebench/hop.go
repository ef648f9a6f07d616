package main

import (
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// hopClock measures the server's hop, packet in to packet out, as an outside observer: the
// publisher notes when each packet left (an interceptor at the end of its pion chain, so
// after packetization and before SRTP) and the viewers look up what they receive. The
// server rewrites SSRC, sequence numbers and timestamps, but forwards the payload as it
// came: packets are matched by a hash of their payload. Both ends share this process's
// clock; the two loopback passes and the viewer's own decryption and scheduling are in the
// figure, the publisher's pacing is not.
type hopClock struct {
	seed maphash.Seed

	mu    sync.Mutex
	sent  map[uint64]int64 // payload hash → send time (ns since start)
	order [hopKeep]uint64  // ring of the hashes in sent, to forget the oldest
	next  int
	start time.Time

	hops []time.Duration // measured, since the last reset
}

// hopKeep packets are remembered: about 8 s of a 2 Mbit/s stream, far longer than any hop.
const hopKeep = 2048

// hopSampleCap bounds the samples kept per window (a 10 s window at 500 viewers of a
// 200-packet/s stream would be a million).
const hopSampleCap = 200_000

func newHopClock() *hopClock {
	return &hopClock{seed: maphash.MakeSeed(), sent: make(map[uint64]int64, hopKeep), start: time.Now()}
}

func (h *hopClock) key(payload []byte) uint64 { return maphash.Bytes(h.seed, payload) }

// sentNow notes a packet leaving the publisher.
func (h *hopClock) sentNow(payload []byte) {
	k, at := h.key(payload), int64(time.Since(h.start))
	h.mu.Lock()
	if old := h.order[h.next]; old != 0 {
		delete(h.sent, old)
	}
	h.order[h.next], h.next = k, (h.next+1)%hopKeep
	h.sent[k] = at
	h.mu.Unlock()
}

// received notes a packet arriving at a viewer; packets the publisher did not send (or
// sent too long ago) are not counted.
func (h *hopClock) received(payload []byte) {
	k, now := h.key(payload), int64(time.Since(h.start))
	h.mu.Lock()
	if at, ok := h.sent[k]; ok && len(h.hops) < hopSampleCap {
		h.hops = append(h.hops, time.Duration(now-at))
	}
	h.mu.Unlock()
}

// window returns the hops measured since the last call and starts a new window.
func (h *hopClock) window() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.hops
	h.hops = nil
	return out
}

// hopPercentiles are p50, p99 and the largest of hops (0 without samples).
func hopPercentiles(hops []time.Duration) (p50, p99, max time.Duration) {
	if len(hops) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(hops)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

// hopInterceptor notes the send time of every RTP packet the publisher writes.
type hopInterceptor struct {
	interceptor.NoOp
	clock *hopClock
}

func (i *hopInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		i.clock.sentNow(payload)
		return w.Write(h, payload, a)
	})
}

// hopFactory adds the interceptor to a registry.
type hopFactory struct{ clock *hopClock }

func (f hopFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &hopInterceptor{clock: f.clock}, nil
}
