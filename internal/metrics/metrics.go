// Package metrics is a small Prometheus registry: counters, gauges and histograms, with or
// without labels, that cost one atomic operation per update and never allocate on it, plus
// an http.Handler that writes the text exposition format (version 0.0.4) and Go runtime and
// process metrics.
package metrics

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrRegistration is wrapped by the error Registry.Err reports for a bad name, a duplicate
// metric or a wrong number of label values. Such a metric still works but is not exported,
// and the Handler answers 500 until the code is fixed, so the mistake is loud without a
// panic.
var ErrRegistration = errors.New("metrics: registration")

type kind uint8

const (
	kindCounter kind = iota
	kindGauge
	kindHistogram
)

func (k kind) String() string {
	return [...]string{"counter", "gauge", "histogram"}[k]
}

// Registry holds metric families in the order they were registered.
type Registry struct {
	mu       sync.Mutex
	families []*family
	names    map[string]bool
	err      error
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{names: map[string]bool{}}
}

// Err returns the first registration error, or nil.
func (r *Registry) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Registry) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// family is one metric name with its HELP, TYPE and series.
type family struct {
	r       *Registry
	name    string
	help    string
	kind    kind
	labels  []string
	buckets []float64 // histograms

	mu       sync.RWMutex
	children map[string]*child // key: label values joined by 0xff

	// collect, when set, produces the series at scrape time instead of children.
	collect func(emit func(v float64, labelValues ...string))
}

// child is one series: a counter, a gauge or a histogram, by family kind.
type child struct {
	labelValues []string
	bits        atomic.Uint64 // counter: count; gauge: float64 bits
	hist        *histogramData
}

type collectFunc = func(emit func(v float64, labelValues ...string))

func (r *Registry) register(name, help string, k kind, labels []string, buckets []float64, collect collectFunc) *family {
	f := &family{r: r, name: name, help: help, kind: k, labels: slices.Clone(labels), buckets: buckets,
		children: map[string]*child{}, collect: collect}
	if err := validate(name, labels, k); err != nil {
		r.fail(err)
		return f // works, never exported
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[name] {
		if r.err == nil {
			r.err = fmt.Errorf("%w: %s registered twice", ErrRegistration, name)
		}
		return f
	}
	r.names[name] = true
	r.families = append(r.families, f)
	return f
}

func validate(name string, labels []string, k kind) error {
	if !validName(name, true) {
		return fmt.Errorf("%w: metric name %q: use [a-zA-Z_:][a-zA-Z0-9_:]*", ErrRegistration, name)
	}
	for i, l := range labels {
		if !validName(l, false) || strings.HasPrefix(l, "__") {
			return fmt.Errorf("%w: %s: label name %q: use [a-zA-Z_][a-zA-Z0-9_]*, not starting with __", ErrRegistration, name, l)
		}
		if k == kindHistogram && l == "le" {
			return fmt.Errorf("%w: %s: a histogram cannot have a label le", ErrRegistration, name)
		}
		if slices.Contains(labels[:i], l) {
			return fmt.Errorf("%w: %s: label %q twice", ErrRegistration, name, l)
		}
	}
	return nil
}

func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || colon && c == ':' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// get returns the series for values, creating it the first time. Looking up an existing
// series does not allocate (the key is built on the stack and map lookups with string(b) do
// not copy).
func (f *family) get(values []string) *child {
	var stack [128]byte
	key := stack[:0]
	for i, v := range values {
		if i > 0 {
			key = append(key, 0xff)
		}
		key = append(key, v...)
	}
	f.mu.RLock()
	c := f.children[string(key)]
	f.mu.RUnlock()
	if c != nil {
		return c
	}
	if len(values) != len(f.labels) {
		f.r.fail(fmt.Errorf("%w: %s has labels %v, got %d values %q", ErrRegistration, f.name, f.labels, len(values), strings.Join(values, ",")))
		return f.newChild(nil) // detached: works, never exported
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.children[string(key)]; c != nil {
		return c
	}
	c = f.newChild(slices.Clone(values))
	f.children[string(key)] = c
	return c
}

func (f *family) newChild(values []string) *child {
	c := &child{labelValues: values}
	if f.kind == kindHistogram {
		c.hist = &histogramData{upper: f.buckets, counts: make([]atomic.Uint64, len(f.buckets)+1)}
	}
	return c
}

func (f *family) delete(values []string) bool {
	key := strings.Join(values, "\xff")
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.children[key]
	delete(f.children, key)
	return ok
}

// Counter only goes up.
type Counter struct{ c *child }

// Inc adds one.
func (c Counter) Inc() { c.c.bits.Add(1) }

// Add adds n.
func (c Counter) Add(n uint64) { c.c.bits.Add(n) }

// Value returns the count.
func (c Counter) Value() uint64 { return c.c.bits.Load() }

// Gauge goes up and down.
type Gauge struct{ c *child }

// Set sets the gauge to v.
func (g Gauge) Set(v float64) { g.c.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative).
func (g Gauge) Add(d float64) {
	for {
		old := g.c.bits.Load()
		if g.c.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Inc adds one.
func (g Gauge) Inc() { g.Add(1) }

// Dec subtracts one.
func (g Gauge) Dec() { g.Add(-1) }

// Value returns the gauge's value.
func (g Gauge) Value() float64 { return math.Float64frombits(g.c.bits.Load()) }

// Counter registers a counter without labels. By convention its name ends in _total.
func (r *Registry) Counter(name, help string) Counter {
	return Counter{r.register(name, help, kindCounter, nil, nil, nil).get(nil)}
}

// Gauge registers a gauge without labels.
func (r *Registry) Gauge(name, help string) Gauge {
	return Gauge{r.register(name, help, kindGauge, nil, nil, nil).get(nil)}
}

// CounterVec is a counter with labels.
type CounterVec struct{ f *family }

// CounterVec registers a counter with the given label names.
func (r *Registry) CounterVec(name, help string, labels ...string) CounterVec {
	return CounterVec{r.register(name, help, kindCounter, labels, nil, nil)}
}

// With returns the counter for the label values, in the order the labels were registered.
// It allocates only when the series is new; keep the Counter for the packet path.
func (v CounterVec) With(values ...string) Counter { return Counter{v.f.get(values)} }

// Delete removes the series for the label values (a participant that left) and reports
// whether it existed.
func (v CounterVec) Delete(values ...string) bool { return v.f.delete(values) }

// GaugeVec is a gauge with labels.
type GaugeVec struct{ f *family }

// GaugeVec registers a gauge with the given label names.
func (r *Registry) GaugeVec(name, help string, labels ...string) GaugeVec {
	return GaugeVec{r.register(name, help, kindGauge, labels, nil, nil)}
}

// With returns the gauge for the label values; see CounterVec.With.
func (v GaugeVec) With(values ...string) Gauge { return Gauge{v.f.get(values)} }

// Delete removes the series for the label values and reports whether it existed.
func (v GaugeVec) Delete(values ...string) bool { return v.f.delete(values) }

// CounterFunc registers a counter whose value f returns at each scrape (for counters kept
// elsewhere, such as the TURN server's). f must be cheap and safe to call concurrently.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.register(name, help, kindCounter, nil, nil, func(emit func(float64, ...string)) { emit(f()) })
}

// GaugeFunc registers a gauge whose value f returns at each scrape.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.register(name, help, kindGauge, nil, nil, func(emit func(float64, ...string)) { emit(f()) })
}

// GaugeCollector registers a gauge with labels whose series collect emits at each scrape,
// one emit per series with the label values in registration order: for state that already
// lives elsewhere (participants per room), so nothing has to be kept in step with it.
func (r *Registry) GaugeCollector(name, help string, labels []string, collect func(emit func(v float64, labelValues ...string))) {
	r.register(name, help, kindGauge, labels, nil, collect)
}

// CounterCollector is GaugeCollector for counters.
func (r *Registry) CounterCollector(name, help string, labels []string, collect func(emit func(v float64, labelValues ...string))) {
	r.register(name, help, kindCounter, labels, nil, collect)
}
