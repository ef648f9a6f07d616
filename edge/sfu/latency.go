package sfu

import (
	"slices"
	"sync"
	"time"
)

// latencyWindow keeps the last latencySamples capture-to-RTP latencies of a track: about 30 s
// at 30 fps, enough for a stable p99.
const latencySamples = 1024

type latencyWindow struct {
	mu      sync.Mutex
	samples [latencySamples]time.Duration
	n       int // total recorded
}

func (w *latencyWindow) record(d time.Duration) {
	w.mu.Lock()
	w.samples[w.n%latencySamples] = d
	w.n++
	w.mu.Unlock()
}

// Latency summarizes recent capture-to-RTP latencies.
type Latency struct {
	P50, P99, Max time.Duration
	Samples       int
}

func (w *latencyWindow) summary() Latency {
	w.mu.Lock()
	s := slices.Clone(w.samples[:min(w.n, latencySamples)])
	w.mu.Unlock()
	if len(s) == 0 {
		return Latency{}
	}
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return Latency{P50: at(0.50), P99: at(0.99), Max: s[len(s)-1], Samples: len(s)}
}
