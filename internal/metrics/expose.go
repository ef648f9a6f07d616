package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// ContentType is the text exposition format the Handler writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// WriteTo writes every family in the text exposition format: families in registration order,
// series sorted by label values, families without series left out.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	families := slices.Clone(r.families)
	r.mu.Unlock()
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	for _, f := range families {
		b = f.appendText(b)
	}
	n, err := w.Write(b)
	*bp = b // keep the grown buffer for the next scrape
	bufPool.Put(bp)
	return int64(n), err
}

// Handler serves the registry for GET and HEAD. It answers 500 with the error while
// Registry.Err reports one, so a registration mistake cannot go unnoticed. Authentication is
// the caller's (wrap it).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "metrics: use GET", http.StatusMethodNotAllowed)
			return
		}
		if err := r.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Cache-Control", "no-store")
		if req.Method == http.MethodHead {
			return
		}
		_, _ = r.WriteTo(w)
	})
}

func (f *family) appendText(b []byte) []byte {
	start := len(b)
	b = append(b, "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = appendEscaped(b, f.help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, f.kind.String()...)
	b = append(b, '\n')
	header := len(b)

	if f.collect != nil {
		seen := map[string]bool{}
		f.collect(func(v float64, values ...string) {
			if len(values) != len(f.labels) {
				f.r.fail(fmt.Errorf("%w: %s collector emitted %d label values %q for labels %v", ErrRegistration, f.name, len(values), values, f.labels))
				return
			}
			key := strings.Join(values, "\xff")
			if seen[key] {
				f.r.fail(fmt.Errorf("%w: %s collector emitted %q twice", ErrRegistration, f.name, values))
				return
			}
			seen[key] = true
			b = f.appendSample(b, "", values, "", "", nil)
			b = appendFloat(b, v)
			b = append(b, '\n')
		})
	} else {
		f.mu.RLock()
		children := make([]*child, 0, len(f.children))
		for _, c := range f.children {
			children = append(children, c)
		}
		f.mu.RUnlock()
		slices.SortFunc(children, func(x, y *child) int { return slices.Compare(x.labelValues, y.labelValues) })
		for _, c := range children {
			b = f.appendChild(b, c)
		}
	}
	if len(b) == header {
		return b[:start] // no series: leave the family out
	}
	return b
}

func (f *family) appendChild(b []byte, c *child) []byte {
	switch f.kind {
	case kindCounter:
		b = f.appendSample(b, "", c.labelValues, "", "", nil)
		b = strconv.AppendUint(b, c.bits.Load(), 10)
	case kindGauge:
		b = f.appendSample(b, "", c.labelValues, "", "", nil)
		b = appendFloat(b, math.Float64frombits(c.bits.Load()))
	case kindHistogram:
		h := c.hist
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			if i < len(h.upper) {
				b = f.appendSample(b, "_bucket", c.labelValues, "le", "", strconv.AppendFloat(nil, h.upper[i], 'g', -1, 64))
			} else {
				b = f.appendSample(b, "_bucket", c.labelValues, "le", "+Inf", nil)
			}
			b = strconv.AppendUint(b, cum, 10)
			b = append(b, '\n')
		}
		b = f.appendSample(b, "_sum", c.labelValues, "", "", nil)
		b = appendFloat(b, math.Float64frombits(h.sumBits.Load()))
		b = append(b, '\n')
		b = f.appendSample(b, "_count", c.labelValues, "", "", nil)
		b = strconv.AppendUint(b, cum, 10) // the sum of the buckets, so it always equals +Inf
	}
	return append(b, '\n')
}

// appendSample appends name+suffix and the labels (plus one extra label, whose value is
// extra or extraBytes), and the space before the value.
func (f *family) appendSample(b []byte, suffix string, values []string, extraName, extra string, extraBytes []byte) []byte {
	b = append(b, f.name...)
	b = append(b, suffix...)
	if len(values) > 0 || extraName != "" {
		b = append(b, '{')
		for i, v := range values {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, f.labels[i]...)
			b = append(b, `="`...)
			b = appendEscaped(b, v, true)
			b = append(b, '"')
		}
		if extraName != "" {
			if len(values) > 0 {
				b = append(b, ',')
			}
			b = append(b, extraName...)
			b = append(b, `="`...)
			b = append(b, extra...)
			b = append(b, extraBytes...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, ' ')
}

// appendEscaped escapes backslash and newline, and in label values also the double quote.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
