package gpio

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// happened is one event of a button, at an offset from the start.
type happened struct {
	at   time.Duration
	ev   event
	held time.Duration
}

func (h happened) String() string {
	names := map[event]string{evPress: "press", evShort: "short", evLong: "long", evRelease: "release"}
	return fmt.Sprintf("%s@%v(held %v)", names[h.ev], h.at, h.held)
}

// edgeAt is a raw edge at an offset from the start.
type edgeAt struct {
	at     time.Duration
	active bool
}

// simulate runs a button the way Controller.Run does: advance after every edge and at every
// deadline that next returns, until end.
func simulate(b *button, t0 time.Time, edges []edgeAt, end time.Duration) []happened {
	var got []happened
	drain := func(now time.Time) {
		for {
			ev, held := b.advance(now)
			if ev == evNone {
				return
			}
			got = append(got, happened{now.Sub(t0), ev, held})
		}
	}
	now := t0
	for {
		nextEdge := t0.Add(end)
		if len(edges) > 0 {
			nextEdge = t0.Add(edges[0].at)
		}
		if n := b.next(now); !n.IsZero() && n.Before(nextEdge) {
			now = n
			drain(now)
			continue
		}
		if len(edges) == 0 {
			return got
		}
		now = nextEdge
		b.input(edges[0].active, now)
		edges = edges[1:]
		drain(now)
	}
}

func TestButton(t *testing.T) {
	press := func(at time.Duration) edgeAt { return edgeAt{at, true} }
	release := func(at time.Duration) edgeAt { return edgeAt{at, false} }
	tests := []struct {
		name     string
		debounce time.Duration
		long     time.Duration
		held     bool // at the start
		edges    []edgeAt
		want     []happened
	}{
		{"short press", 0, 10 * time.Second, false, []edgeAt{press(100 * ms), release(300 * ms)},
			[]happened{{100 * ms, evPress, 0}, {300 * ms, evShort, 200 * ms}}},
		{"just under the short limit", 0, 10 * time.Second, false, []edgeAt{press(0), release(999 * ms)},
			[]happened{{0, evPress, 0}, {999 * ms, evShort, 999 * ms}}},
		{"at the short limit does nothing", 0, 10 * time.Second, false, []edgeAt{press(0), release(time.Second)},
			[]happened{{0, evPress, 0}, {time.Second, evRelease, time.Second}}},
		{"cancelled long press", 0, 10 * time.Second, false, []edgeAt{press(0), release(5 * time.Second)},
			[]happened{{0, evPress, 0}, {5 * time.Second, evRelease, 5 * time.Second}}},
		{"long press fires while held", 0, 10 * time.Second, false, []edgeAt{press(time.Second), release(15 * time.Second)},
			[]happened{{time.Second, evPress, 0}, {11 * time.Second, evLong, 10 * time.Second}, {15 * time.Second, evRelease, 14 * time.Second}}},
		{"no long action: any length is short", 0, 0, false, []edgeAt{press(0), release(5 * time.Second)},
			[]happened{{0, evPress, 0}, {5 * time.Second, evShort, 5 * time.Second}}},
		{"no long action: held a minute", 0, 0, false, []edgeAt{press(0), release(time.Minute)},
			[]happened{{0, evPress, 0}, {time.Minute, evShort, time.Minute}}},
		{"held at start counts from the next press", 0, 10 * time.Second, true,
			[]edgeAt{release(20 * time.Second), press(21 * time.Second), release(21*time.Second + 100*ms)},
			[]happened{{20 * time.Second, evRelease, 20 * time.Second}, {21 * time.Second, evPress, 0}, {21*time.Second + 100*ms, evShort, 100 * ms}}},
		{"held at start never resets", 0, 2 * time.Second, true, []edgeAt{release(30 * time.Second)},
			[]happened{{30 * time.Second, evRelease, 30 * time.Second}}},
		{"repeated levels are ignored", 0, 10 * time.Second, false,
			[]edgeAt{press(0), press(10 * ms), release(100 * ms), release(110 * ms)},
			[]happened{{0, evPress, 0}, {100 * ms, evShort, 100 * ms}}},
		{"software debounce: bouncy press and release", 30 * ms, 10 * time.Second, false,
			[]edgeAt{press(0), release(5 * ms), press(8 * ms), release(200 * ms), press(203 * ms), release(206 * ms)},
			[]happened{{38 * ms, evPress, 0}, {236 * ms, evShort, 198 * ms}}},
		{"software debounce: a glitch is nothing", 30 * ms, 10 * time.Second, false,
			[]edgeAt{press(0), release(10 * ms), press(100 * ms), release(129 * ms)},
			nil},
		{"software debounce: released just before the long press", 30 * ms, 10 * time.Second, false,
			[]edgeAt{press(0), release(9990 * ms)},
			[]happened{{30 * ms, evPress, 0}, {10020 * ms, evRelease, 9990 * ms}}},
		{"software debounce: released just after the long press", 30 * ms, 10 * time.Second, false,
			[]edgeAt{press(0), release(10010 * ms)},
			[]happened{{30 * ms, evPress, 0}, {10 * time.Second, evLong, 10 * time.Second}, {10040 * ms, evRelease, 10010 * ms}}},
		{"two presses", 0, 10 * time.Second, false,
			[]edgeAt{press(0), release(100 * ms), press(300 * ms), release(400 * ms)},
			[]happened{{0, evPress, 0}, {100 * ms, evShort, 100 * ms}, {300 * ms, evPress, 0}, {400 * ms, evShort, 100 * ms}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			b := newButton(tt.debounce, tt.long, tt.held, t0)
			got := simulate(b, t0, tt.edges, 2*time.Minute)
			if !slices.Equal(got, tt.want) {
				t.Errorf("events\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestButtonLateAdvance: when advance is first called after the release, a long press that
// was reached before it still fires, before the release.
func TestButtonLateAdvance(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newButton(0, 10*time.Second, false, t0)
	b.input(true, t0)
	got := []event{}
	if ev, _ := b.advance(t0); ev != evNone {
		got = append(got, ev)
	}
	b.input(false, t0.Add(10500*ms))
	for {
		ev, _ := b.advance(t0.Add(11 * time.Second))
		if ev == evNone {
			break
		}
		got = append(got, ev)
	}
	if want := []event{evPress, evLong, evRelease}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestButtonCountdown(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		long     time.Duration
		held     time.Duration // pressed at t0 and still held at t0+held
		released bool          // released at t0+held instead
		want     bool
	}{
		{"before the countdown", 10 * time.Second, 2999 * ms, false, false},
		{"countdown starts at 30%", 10 * time.Second, 3 * time.Second, false, true},
		{"counting down", 10 * time.Second, 9999 * ms, false, true},
		{"over once fired", 10 * time.Second, 10 * time.Second, false, false},
		{"over once released", 10 * time.Second, 5 * time.Second, true, false},
		{"short long press: not before the short limit", 2 * time.Second, 999 * ms, false, false},
		{"short long press: from the short limit", 2 * time.Second, time.Second, false, true},
		{"no long action", 0, 30 * time.Second, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newButton(0, tt.long, false, t0)
			b.input(true, t0)
			b.advance(t0)
			now := t0.Add(tt.held)
			if tt.released {
				b.input(false, now)
			}
			for ev, _ := b.advance(now); ev != evNone; ev, _ = b.advance(now) {
			}
			if got := b.countingDown(now); got != tt.want {
				t.Errorf("countingDown after %v = %v, want %v", tt.held, got, tt.want)
			}
		})
	}
}

func TestPatternAt(t *testing.T) {
	tests := []struct {
		name     string
		p        pattern
		d        time.Duration
		wantOn   bool
		wantNext time.Duration
	}{
		{"steady off", steadyOff, time.Hour, false, -1},
		{"steady on", steadyOn, 0, true, -1},
		{"blink starts on", slowBlink, 0, true, 500 * ms},
		{"blink on", slowBlink, 499 * ms, true, 500 * ms},
		{"blink turns off", slowBlink, 500 * ms, false, time.Second},
		{"blink second period", slowBlink, 1200 * ms, true, 1500 * ms},
		{"heartbeat off", heartbeat, 150 * ms, false, 2 * time.Second},
		{"double blip second flash", doubleBlip, 260 * ms, true, 350 * ms},
		{"double blip gap", doubleBlip, 100 * ms, false, 250 * ms},
		{"double blip next period", doubleBlip, 2050 * ms, true, 2100 * ms},
		{"before the start counts as the start", fastBlink, -time.Second, true, 125 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			on, next := tt.p.at(tt.d)
			if on != tt.wantOn || next != tt.wantNext {
				t.Errorf("at(%v) = %v, %v; want %v, %v", tt.d, on, next, tt.wantOn, tt.wantNext)
			}
		})
	}
}

// TestLooksTellStatesApart: every state (and the countdown) looks different with two LEDs,
// and with one.
func TestLooksTellStatesApart(t *testing.T) {
	key := func(p pattern) string { return fmt.Sprint(p.on, p.steps) }
	two, one := map[string]State{}, map[string]State{}
	for s := range countdown + 1 {
		l := looks[s]
		name := s.String()
		if s == countdown {
			name = "countdown"
		}
		if prev, dup := two[key(l.green)+"/"+key(l.red)]; dup {
			t.Errorf("with two LEDs, %s looks like %v", name, prev)
		}
		two[key(l.green)+"/"+key(l.red)] = s
		if prev, dup := one[key(l.mono)]; dup && !(s == StateResetting && prev == StateStreaming) {
			t.Errorf("with one LED, %s looks like %v", name, prev)
		}
		one[key(l.mono)] = s
		for _, p := range []pattern{l.green, l.red, l.mono} {
			if len(p.steps)%2 != 0 {
				t.Errorf("%s: a pattern has an odd number of steps", name)
			}
		}
	}
}

func TestStateString(t *testing.T) {
	var names []string
	for s := range numStates + 1 {
		names = append(names, s.String())
	}
	if got, want := strings.Join(names, " "), "booting ready streaming muted error resetting State(6)"; got != want {
		t.Errorf("names %q, want %q", got, want)
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		in      string
		want    lineSpec
		wantErr bool
	}{
		{"BUTTON_PRIVACY", lineSpec{name: "BUTTON_PRIVACY"}, false},
		{"LED 1", lineSpec{name: "LED 1"}, false},
		{"gpiochip0:17", lineSpec{chip: "gpiochip0", offset: 17}, false},
		{"gpiochip12:0", lineSpec{chip: "gpiochip12", offset: 0}, false},
		{"gpiochip0:x", lineSpec{}, true},
		{"gpiochip0:", lineSpec{}, true},
		{"gpiochip0:123456", lineSpec{}, true},
		{"", lineSpec{}, true},
		{strings.Repeat("x", 32), lineSpec{}, true},
		{"A\tB", lineSpec{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseLine(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseLine(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
