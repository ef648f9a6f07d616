package metrics

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func scrape(t *testing.T, r *Registry) (string, *exposition) {
	t.Helper()
	var b strings.Builder
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	e, err := parseExposition(b.String())
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, b.String())
	}
	return b.String(), e
}

func TestExposition(t *testing.T) {
	r := NewRegistry()
	packets := r.Counter("edge_packets_total", "RTP packets forwarded.")
	rooms := r.Gauge("edge_rooms", "Rooms open now.")
	bytesOut := r.CounterVec("edge_bytes_sent_total", "Bytes sent, by room and kind.", "room", "kind")
	loss := r.GaugeVec("edge_loss_ratio", "Loss reported by receivers.", "participant")
	r.GaugeVec("edge_unused", "A vector that never gets a series.", "x")
	lat := r.Histogram("edge_join_seconds", "Time to join.", []float64{0.1, 0.5, 1})
	layers := r.HistogramVec("edge_layer_switch_seconds", "Layer switch delay.", []float64{0.05, 0.25}, "quality")
	r.CounterFunc("edge_turn_allocations_total", "TURN allocations.", func() float64 { return 7 })
	r.GaugeCollector("edge_participants", "Participants per room.", []string{"room"}, func(emit func(float64, ...string)) {
		emit(2, "lobby")
		emit(1, "kitchen")
	})

	packets.Add(41)
	packets.Inc()
	rooms.Set(3)
	rooms.Dec()
	bytesOut.With("lobby", "video").Add(1000)
	bytesOut.With("lobby", "audio").Add(50)
	bytesOut.With("lobby", "video").Add(24)
	loss.With(`odd "name"\ with` + "\nnewline").Set(0.125)
	loss.With("inf").Set(math.Inf(1))
	for _, v := range []float64{0.05, 0.1, 0.3, 2} {
		lat.Observe(v)
	}
	layers.With("high").Observe(0.1)

	text, e := scrape(t, r)
	want := `# HELP edge_packets_total RTP packets forwarded.
# TYPE edge_packets_total counter
edge_packets_total 42
# HELP edge_rooms Rooms open now.
# TYPE edge_rooms gauge
edge_rooms 2
# HELP edge_bytes_sent_total Bytes sent, by room and kind.
# TYPE edge_bytes_sent_total counter
edge_bytes_sent_total{room="lobby",kind="audio"} 50
edge_bytes_sent_total{room="lobby",kind="video"} 1024
# HELP edge_loss_ratio Loss reported by receivers.
# TYPE edge_loss_ratio gauge
edge_loss_ratio{participant="inf"} +Inf
edge_loss_ratio{participant="odd \"name\"\\ with\nnewline"} 0.125
# HELP edge_join_seconds Time to join.
# TYPE edge_join_seconds histogram
edge_join_seconds_bucket{le="0.1"} 2
edge_join_seconds_bucket{le="0.5"} 3
edge_join_seconds_bucket{le="1"} 3
edge_join_seconds_bucket{le="+Inf"} 4
edge_join_seconds_sum 2.45
edge_join_seconds_count 4
# HELP edge_layer_switch_seconds Layer switch delay.
# TYPE edge_layer_switch_seconds histogram
edge_layer_switch_seconds_bucket{quality="high",le="0.05"} 0
edge_layer_switch_seconds_bucket{quality="high",le="0.25"} 1
edge_layer_switch_seconds_bucket{quality="high",le="+Inf"} 1
edge_layer_switch_seconds_sum{quality="high"} 0.1
edge_layer_switch_seconds_count{quality="high"} 1
# HELP edge_turn_allocations_total TURN allocations.
# TYPE edge_turn_allocations_total counter
edge_turn_allocations_total 7
# HELP edge_participants Participants per room.
# TYPE edge_participants gauge
edge_participants{room="lobby"} 2
edge_participants{room="kitchen"} 1
`
	if text != want {
		t.Fatalf("exposition:\n%s\nwant:\n%s", text, want)
	}
	for key, v := range map[string]float64{
		`edge_bytes_sent_total{kind="video",room="lobby"}`:            1024,
		`edge_loss_ratio{participant="odd \"name\"\\ with\nnewline"}`: 0.125,
		`edge_join_seconds_bucket{le="+Inf"}`:                         4,
		`edge_layer_switch_seconds_count{quality="high"}`:             1,
		`edge_participants{room="kitchen"}`:                           1,
	} {
		if got, ok := e.series[key]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, v)
		}
	}
	if e.help["edge_rooms"] != "Rooms open now." || e.types["edge_join_seconds"] != "histogram" {
		t.Errorf("HELP/TYPE parsed as %v %v", e.help, e.types)
	}

	if !bytesOut.Delete("lobby", "audio") || bytesOut.Delete("lobby", "audio") {
		t.Fatal("Delete should report the series once")
	}
	if text, _ := scrape(t, r); strings.Contains(text, `kind="audio"`) {
		t.Fatalf("deleted series still exported:\n%s", text)
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.Counter("a_total", "A.").Inc()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		method   string
		code     int
		wantBody string
	}{
		{http.MethodGet, 200, "a_total 1\n"},
		{http.MethodHead, 200, ""},
		{http.MethodPost, 405, "use GET"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("%d %q, want %d with %q", resp.StatusCode, body, tc.code, tc.wantBody)
			}
			if tc.code == 200 {
				if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
					t.Fatalf("Content-Type %q", ct)
				}
			}
		})
	}
	r.Counter("a_total", "registered twice")
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(body), "a_total registered twice") {
		t.Fatalf("after a duplicate registration: %d %q", resp.StatusCode, body)
	}
}

func TestRegistrationErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(r *Registry)
		want string
	}{
		{"bad metric name", func(r *Registry) { r.Counter("edge-packets", "") }, `metric name "edge-packets"`},
		{"digit first", func(r *Registry) { r.Gauge("1rooms", "") }, `metric name "1rooms"`},
		{"bad label name", func(r *Registry) { r.CounterVec("x_total", "", "room:id") }, `label name "room:id"`},
		{"reserved label", func(r *Registry) { r.GaugeVec("x", "", "__name") }, `label name "__name"`},
		{"label twice", func(r *Registry) { r.GaugeVec("x", "", "a", "a") }, `label "a" twice`},
		{"le on a histogram", func(r *Registry) { r.HistogramVec("x", "", []float64{1}, "le") }, "cannot have a label le"},
		{"buckets not increasing", func(r *Registry) { r.Histogram("x", "", []float64{1, 1}) }, "finite and increasing"},
		{"NaN bucket", func(r *Registry) { r.Histogram("x", "", []float64{math.NaN()}) }, "finite and increasing"},
		{"duplicate", func(r *Registry) { r.Gauge("x", ""); r.Counter("x", "") }, "x registered twice"},
		{"too few label values", func(r *Registry) { r.CounterVec("x_total", "", "a", "b").With("1").Inc() }, "got 1 values"},
		{"collector label count", func(r *Registry) {
			r.GaugeCollector("x", "", []string{"a"}, func(emit func(float64, ...string)) { emit(1) })
			_, _ = r.WriteTo(io.Discard)
		}, "emitted 0 label values"},
		{"collector duplicate", func(r *Registry) {
			r.GaugeCollector("x", "", []string{"a"}, func(emit func(float64, ...string)) { emit(1, "v"); emit(2, "v") })
			_, _ = r.WriteTo(io.Discard)
		}, `emitted ["v"] twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			tc.do(r)
			if err := r.Err(); !errors.Is(err, ErrRegistration) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Err() = %v, want ErrRegistration with %q", err, tc.want)
			}
			// Whatever was written still parses.
			scrape(t, r)
		})
	}
	// A detached metric still counts, so code using it does not crash.
	r := NewRegistry()
	c := r.CounterVec("x_total", "", "a").With("1", "2")
	c.Inc()
	if c.Value() != 1 {
		t.Fatal("a detached counter does not count")
	}
}

func TestConcurrentUpdatesAndScrapes(t *testing.T) {
	r := NewRegistry()
	c := r.CounterVec("hits_total", "", "worker")
	g := r.Gauge("level", "")
	h := r.Histogram("size", "", ExponentialBuckets(1, 2, 8))
	const workers, each = 4, 10000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				scrape(t, r)
			}
		}
	})
	var updaters sync.WaitGroup
	for w := range workers {
		name := string(rune('a' + w))
		updaters.Go(func() {
			for i := range each {
				c.With(name).Inc()
				g.Add(1)
				h.Observe(float64(i % 300))
			}
		})
	}
	updaters.Wait()
	close(stop)
	wg.Wait()
	_, e := scrape(t, r)
	for w := range workers {
		if got := e.series[`hits_total{worker="`+string(rune('a'+w))+`"}`]; got != each {
			t.Errorf("worker %d: %v increments, want %d", w, got, each)
		}
	}
	if g.Value() != workers*each || e.series["size_count"] != workers*each {
		t.Errorf("gauge %v, histogram count %v, want %d", g.Value(), e.series["size_count"], workers*each)
	}
}

func TestUpdatesDoNotAllocate(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c_total", "")
	vec := r.CounterVec("v_total", "", "room", "kind")
	vec.With("lobby", "video") // the series exists; looking it up again must not allocate
	g := r.Gauge("g", "")
	h := r.HistogramVec("h", "", ExponentialBuckets(0.001, 2, 12), "q")
	hh := h.With("high")
	for name, f := range map[string]func(){
		"Counter.Inc":           func() { c.Inc() },
		"CounterVec.With().Inc": func() { vec.With("lobby", "video").Inc() },
		"Gauge.Add":             func() { g.Add(1.5) },
		"Histogram.Observe":     func() { hh.Observe(0.02) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}

func TestParserIsStrict(t *testing.T) {
	for _, bad := range []string{
		"a 1",                              // no final newline
		"a 1\n",                            // no TYPE
		"# TYPE a gauge\na 1 1700000000\n", // timestamp
		"# TYPE a gauge\na{x=\"1\",} 1\n",  // trailing comma
		"# TYPE a gauge\na{x=\"\\t\"} 1\n", // bad escape
		"# TYPE a gauge\na 1\na 2\n",       // duplicate series
		"# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",                                         // family not contiguous
		"# TYPE a counter\na -1\n",                                                                // negative counter
		"# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\na_sum 1\na_count 1\n", // not cumulative
		"# TYPE a histogram\na_bucket{le=\"+Inf\"} 2\na_sum 1\na_count 3\n",                       // count differs
		"# TYPE a gauge\na nan\n",                                                                 // lower-case NaN
		"# TYPE a gauge\n\na 1\n",                                                                 // blank line
	} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("parser accepted %q", bad)
		}
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := NewRegistry().Counter("c_total", "")
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	c := NewRegistry().Counter("c_total", "")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

func BenchmarkCounterVecWithInc(b *testing.B) {
	v := NewRegistry().CounterVec("v_total", "", "room", "kind")
	b.ReportAllocs()
	for b.Loop() {
		v.With("lobby", "video").Inc()
	}
}

func BenchmarkGaugeAdd(b *testing.B) {
	g := NewRegistry().Gauge("g", "")
	b.ReportAllocs()
	for b.Loop() {
		g.Add(1)
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().Histogram("h", "", ExponentialBuckets(0.001, 2, 12))
	b.ReportAllocs()
	for b.Loop() {
		h.Observe(0.02)
	}
}

func BenchmarkWriteTo(b *testing.B) {
	r := NewRegistry()
	v := r.CounterVec("v_total", "", "room", "participant")
	for i := range 100 {
		v.With("lobby", string(rune('a'+i%26))+string(rune('a'+i/26))).Inc()
	}
	RegisterRuntime(r)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = r.WriteTo(io.Discard)
	}
}
