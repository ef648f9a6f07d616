package metrics

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"
)

type histogramData struct {
	upper   []float64       // bucket upper bounds, increasing, without +Inf
	counts  []atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sumBits atomic.Uint64
}

// Histogram counts observations into buckets.
type Histogram struct{ c *child }

// Observe records v: a binary search over the bounds and two atomic updates.
func (h Histogram) Observe(v float64) {
	d := h.c.hist
	d.counts[sort.SearchFloat64s(d.upper, v)].Add(1)
	for {
		old := d.sumBits.Load()
		if d.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// HistogramVec is a histogram with labels.
type HistogramVec struct{ f *family }

// Histogram registers a histogram without labels with the given bucket upper bounds
// (increasing; +Inf is implied).
func (r *Registry) Histogram(name, help string, buckets []float64) Histogram {
	return Histogram{r.registerHistogram(name, help, nil, buckets).get(nil)}
}

// HistogramVec registers a histogram with labels.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) HistogramVec {
	return HistogramVec{r.registerHistogram(name, help, labels, buckets)}
}

// With returns the histogram for the label values; see CounterVec.With.
func (v HistogramVec) With(values ...string) Histogram { return Histogram{v.f.get(values)} }

// Delete removes the series for the label values and reports whether it existed.
func (v HistogramVec) Delete(values ...string) bool { return v.f.delete(values) }

func (r *Registry) registerHistogram(name, help string, labels []string, buckets []float64) *family {
	b := slices.Clone(buckets)
	if n := len(b); n > 0 && math.IsInf(b[n-1], 1) {
		b = b[:n-1]
	}
	for i, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) || i > 0 && v <= b[i-1] {
			r.fail(fmt.Errorf("%w: %s: buckets %v must be finite and increasing", ErrRegistration, name, buckets))
			b = nil
			break
		}
	}
	return r.register(name, help, kindHistogram, labels, b, nil)
}

// ExponentialBuckets returns n bounds: start, start*factor, start*factor², ...
func ExponentialBuckets(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}
