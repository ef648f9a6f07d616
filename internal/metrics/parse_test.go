package metrics

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// exposition is text format 0.0.4 parsed back by parseExposition, a deliberately strict
// reader of what this package may write: no timestamps, no free comments, no blank lines,
// families contiguous with HELP and TYPE first, no duplicate series, valid escapes,
// consistent histograms.
type exposition struct {
	types  map[string]string
	help   map[string]string
	series map[string]float64 // name{a="x",b="y"} with labels sorted, as seriesKey builds it
}

func seriesKey(name string, labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(name)
	if len(names) > 0 {
		b.WriteByte('{')
		for i, k := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", k, labels[k])
		}
		b.WriteByte('}')
	}
	return b.String()
}

func parseExposition(text string) (*exposition, error) {
	e := &exposition{types: map[string]string{}, help: map[string]string{}, series: map[string]float64{}}
	if text == "" {
		return e, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("does not end with a newline")
	}
	type histSeries struct {
		les    []float64
		counts []float64
		sum    *float64
		count  *float64
	}
	hists := map[string]*histSeries{} // family + labels without le
	done := map[string]bool{}         // families finished
	current := ""
	seenSample := false
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, args ...any) (*exposition, error) {
			return nil, fmt.Errorf("line %d %q: %s", n+1, line, fmt.Sprintf(format, args...))
		}
		if line == "" {
			return fail("blank line")
		}
		startFamily := func(name string) error {
			if name == current {
				if seenSample {
					return fmt.Errorf("HELP or TYPE after samples")
				}
				return nil
			}
			if done[name] {
				return fmt.Errorf("family %s appears twice", name)
			}
			if current != "" {
				done[current] = true
			}
			current, seenSample = name, false
			return nil
		}
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, ok := strings.Cut(rest, " ")
			if !ok || !validName(name, true) {
				return fail("bad HELP")
			}
			if err := startFamily(name); err != nil {
				return fail("%v", err)
			}
			if _, dup := e.help[name]; dup {
				return fail("second HELP")
			}
			h, err := unescape(help, false)
			if err != nil {
				return fail("%v", err)
			}
			e.help[name] = h
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, ok := strings.Cut(rest, " ")
			if !ok || !validName(name, true) || !slices.Contains([]string{"counter", "gauge", "histogram", "summary", "untyped"}, typ) {
				return fail("bad TYPE")
			}
			if err := startFamily(name); err != nil {
				return fail("%v", err)
			}
			if _, dup := e.types[name]; dup {
				return fail("second TYPE")
			}
			e.types[name] = typ
			continue
		}
		if strings.HasPrefix(line, "#") {
			return fail("unexpected comment")
		}
		// A sample.
		i := strings.IndexAny(line, "{ ")
		if i <= 0 {
			return fail("no value")
		}
		name, rest := line[:i], line[i:]
		if !validName(name, true) {
			return fail("bad metric name")
		}
		labels := map[string]string{}
		if rest[0] == '{' {
			var err error
			if rest, err = parseLabels(rest[1:], labels); err != nil {
				return fail("%v", err)
			}
		}
		valueText, ok := strings.CutPrefix(rest, " ")
		if !ok || strings.Contains(valueText, " ") {
			return fail("want exactly one space and a value (no timestamp)")
		}
		v, err := parseValue(valueText)
		if err != nil {
			return fail("%v", err)
		}
		typ := e.types[current]
		if typ == "" {
			return fail("sample before TYPE")
		}
		suffix, ok := strings.CutPrefix(name, current)
		if !ok || !(suffix == "" && typ != "histogram" || typ == "histogram" && slices.Contains([]string{"_bucket", "_sum", "_count"}, suffix)) {
			return fail("sample %s does not belong to family %s (%s)", name, current, typ)
		}
		seenSample = true
		key := seriesKey(name, labels)
		if _, dup := e.series[key]; dup {
			return fail("duplicate series")
		}
		e.series[key] = v
		if typ == "counter" && v < 0 {
			return fail("negative counter")
		}
		if typ == "histogram" {
			le, hasLE := labels["le"]
			delete(labels, "le")
			hk := seriesKey(current, labels)
			h := hists[hk]
			if h == nil {
				h = &histSeries{}
				hists[hk] = h
			}
			switch suffix {
			case "_bucket":
				if !hasLE {
					return fail("bucket without le")
				}
				bound, err := parseValue(le)
				if err != nil {
					return fail("le: %v", err)
				}
				if len(h.les) > 0 && (bound <= h.les[len(h.les)-1] || v < h.counts[len(h.counts)-1]) {
					return fail("buckets not increasing or not cumulative")
				}
				if h.sum != nil || h.count != nil {
					return fail("bucket after _sum or _count")
				}
				h.les, h.counts = append(h.les, bound), append(h.counts, v)
			case "_sum":
				h.sum = &v
			case "_count":
				h.count = &v
			}
			if hasLE && suffix != "_bucket" {
				return fail("le on %s", suffix)
			}
		}
	}
	for k, h := range hists {
		if len(h.les) == 0 || !math.IsInf(h.les[len(h.les)-1], 1) || h.sum == nil || h.count == nil || *h.count != h.counts[len(h.counts)-1] {
			return nil, fmt.Errorf("histogram %s: needs buckets ending in +Inf, _sum, and _count equal to the +Inf bucket", k)
		}
	}
	return e, nil
}

func parseLabels(s string, into map[string]string) (rest string, err error) {
	for {
		eq := strings.Index(s, `="`)
		if eq <= 0 {
			return "", fmt.Errorf("bad label in %q", s)
		}
		name := s[:eq]
		if !validName(name, false) {
			return "", fmt.Errorf("bad label name %q", name)
		}
		if _, dup := into[name]; dup {
			return "", fmt.Errorf("label %s twice", name)
		}
		s = s[eq+2:]
		end := -1
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				end = i
				break
			}
		}
		if end < 0 {
			return "", fmt.Errorf("unterminated label value")
		}
		v, err := unescape(s[:end], true)
		if err != nil {
			return "", err
		}
		into[name] = v
		s = s[end+1:]
		switch {
		case strings.HasPrefix(s, "}"):
			return s[1:], nil
		case strings.HasPrefix(s, ","):
			s = s[1:]
		default:
			return "", fmt.Errorf("want , or } after a label")
		}
	}
}

func unescape(s string, quote bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\n' || c == '"' && quote {
			return "", fmt.Errorf("unescaped %q", c)
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i++; i == len(s) {
			return "", fmt.Errorf("trailing backslash")
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case '"':
			if !quote {
				return "", fmt.Errorf(`\" in HELP`)
			}
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("bad escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

func parseValue(s string) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	if s == "" || strings.ContainsAny(s, "_xXpP") || strings.EqualFold(s, "inf") || strings.EqualFold(s, "nan") || strings.EqualFold(s, "+inf") || strings.EqualFold(s, "-inf") || strings.EqualFold(s, "infinity") {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return strconv.ParseFloat(s, 64)
}
