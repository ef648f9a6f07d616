package gpio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edgeflux/edge/internal/config"
)

// Config mirrors config.GPIO field by field, so the daemon converts with gpio.Config(c.GPIO).
var _ = Config(config.GPIO{})

// fakeHW is GPIO hardware for tests: lines are named by their spec's String().
type fakeHW struct {
	mu        sync.Mutex
	missing   error            // returned by available
	fail      map[string]error // lines that do not open
	softOnly  bool             // the "kernel" does not debounce
	heldStart map[string]bool  // button lines that read active when requested
	ins       map[string]*fakeIn
	outs      map[string]*fakeOut
}

func newFakeHW() *fakeHW {
	return &fakeHW{fail: map[string]error{}, heldStart: map[string]bool{}, ins: map[string]*fakeIn{}, outs: map[string]*fakeOut{}}
}

func (h *fakeHW) available() error { return h.missing }

func (h *fakeHW) input(l lineSpec, o inputOptions, onEdge func(bool)) (inputLine, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail[l.String()]; err != nil {
		return nil, false, err
	}
	in := &fakeIn{opts: o, onEdge: onEdge, level: h.heldStart[l.String()]}
	h.ins[l.String()] = in
	return in, !h.softOnly, nil
}

func (h *fakeHW) output(l lineSpec, activeLow, on bool) (outputLine, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.fail[l.String()]; err != nil {
		return nil, err
	}
	out := &fakeOut{activeLow: activeLow}
	out.record(on)
	h.outs[l.String()] = out
	return out, nil
}

func (h *fakeHW) in(spec string) *fakeIn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ins[spec]
}

func (h *fakeHW) out(spec string) *fakeOut {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.outs[spec]
}

type fakeIn struct {
	opts   inputOptions
	onEdge func(bool)
	mu     sync.Mutex
	level  bool
	closed bool
}

func (i *fakeIn) active() (bool, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.level, nil
}

// set drives the line like a finger: an edge event when the level changes.
func (i *fakeIn) set(active bool) {
	i.mu.Lock()
	i.level = active
	i.mu.Unlock()
	i.onEdge(active)
}

func (i *fakeIn) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.closed = true
	return nil
}

type write struct {
	at time.Time
	on bool
}

type fakeOut struct {
	activeLow bool
	mu        sync.Mutex
	writes    []write
	failing   error
	closed    bool
}

func (o *fakeOut) record(on bool) {
	o.writes = append(o.writes, write{time.Now(), on})
}

func (o *fakeOut) set(on bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("set after close")
	}
	if o.failing != nil {
		return o.failing
	}
	o.record(on)
	return nil
}

func (o *fakeOut) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return nil
}

func (o *fakeOut) on() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writes[len(o.writes)-1].on
}

// changes returns the level at from and then every change until to, as offsets from from.
func (o *fakeOut) changes(from, to time.Time) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	level := false
	var got []string
	for _, w := range o.writes {
		switch {
		case !w.at.After(from):
			level = w.on
			continue
		case got == nil:
			got = append(got, fmt.Sprintf("%v@0s", level))
		}
		if w.at.Before(to) {
			got = append(got, fmt.Sprintf("%v@%v", w.on, w.at.Sub(from)))
		}
	}
	if got == nil {
		got = append(got, fmt.Sprintf("%v@0s", level))
	}
	return got
}

// counter counts the actions, and calls the hooks set (under mu) after counting.
type counter struct {
	mu                    sync.Mutex
	privacy, call, resets int
	onPrivacy, onReset    func()
}

func (c *counter) TogglePrivacy() {
	c.mu.Lock()
	c.privacy++
	f := c.onPrivacy
	c.mu.Unlock()
	call(f)
}

func (c *counter) ToggleCall() { c.mu.Lock(); c.call++; c.mu.Unlock() }

func (c *counter) FactoryReset() {
	c.mu.Lock()
	c.resets++
	f := c.onReset
	c.mu.Unlock()
	call(f)
}

func (c *counter) counts() (privacy, call, resets int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.privacy, c.call, c.resets
}

// logBuf collects log lines.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.buf.String()), "\n")
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// rig is a Controller on fake hardware, running in a synctest bubble.
type rig struct {
	t    *testing.T
	hw   *fakeHW
	c    *Controller
	acts *counter
	log  *logBuf
	stop func()
}

// fullConfig has every button and both LEDs, with the default timings.
func fullConfig() Config {
	return Config{PrivacyButton: "BTN_PRIVACY", CallButton: "gpiochip0:2", ButtonActiveLow: true,
		Debounce: 30 * ms, LongPress: 10 * time.Second, LEDGreen: "LED_GREEN", LEDRed: "gpiochip1:0"}
}

// start makes and runs a Controller; call it inside synctest.Test.
func start(t *testing.T, cfg Config, hw *fakeHW) *rig {
	t.Helper()
	r := &rig{t: t, hw: hw, acts: &counter{}, log: &logBuf{}}
	c, err := newController(cfg, r.acts, r.log.logger(), hw)
	if err != nil {
		t.Fatalf("newController: %v", err)
	}
	r.c = c
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	synctest.Wait()
	return r
}

// hold presses spec's button for d, then releases it, and lets the Controller catch up.
func (r *rig) hold(spec string, d time.Duration) {
	r.t.Helper()
	in := r.hw.in(spec)
	if in == nil {
		r.t.Fatalf("no input line %s", spec)
	}
	in.set(true)
	time.Sleep(d)
	in.set(false)
	synctest.Wait()
}

func (r *rig) sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func (r *rig) wantActions(privacy, call, resets int) {
	r.t.Helper()
	p, c, x := r.acts.counts()
	if p != privacy || c != call || x != resets {
		r.t.Errorf("actions: privacy %d, call %d, reset %d; want %d, %d, %d", p, c, x, privacy, call, resets)
	}
}

func TestControllerButtons(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Config)
		button string
		hold   time.Duration
		want   [3]int // privacy, call, reset
	}{
		{"privacy short press", nil, "BTN_PRIVACY", 200 * ms, [3]int{1, 0, 0}},
		{"privacy held 1.5s does nothing", nil, "BTN_PRIVACY", 1500 * ms, [3]int{0, 0, 0}},
		{"privacy held 9s cancels the reset", nil, "BTN_PRIVACY", 9 * time.Second, [3]int{0, 0, 0}},
		{"privacy held 10s resets", nil, "BTN_PRIVACY", 10 * time.Second, [3]int{0, 0, 1}},
		{"privacy held a minute resets once", nil, "BTN_PRIVACY", time.Minute, [3]int{0, 0, 1}},
		{"call short press", nil, "gpiochip0:2", 100 * ms, [3]int{0, 1, 0}},
		{"call held 20s is still a call press", nil, "gpiochip0:2", 20 * time.Second, [3]int{0, 1, 0}},
		{"reset button: privacy held 20s toggles privacy",
			func(c *Config) { c.ResetButton = "BTN_RESET" }, "BTN_PRIVACY", 20 * time.Second, [3]int{1, 0, 0}},
		{"reset button: short press does nothing",
			func(c *Config) { c.ResetButton = "BTN_RESET" }, "BTN_RESET", 200 * ms, [3]int{0, 0, 0}},
		{"reset button: held 10s resets",
			func(c *Config) { c.ResetButton = "BTN_RESET" }, "BTN_RESET", 10 * time.Second, [3]int{0, 0, 1}},
		{"long press off: privacy held 20s toggles privacy",
			func(c *Config) { c.LongPress = 0 }, "BTN_PRIVACY", 20 * time.Second, [3]int{1, 0, 0}},
		{"configured long press", func(c *Config) { c.LongPress = 2 * time.Second }, "BTN_PRIVACY", 2 * time.Second, [3]int{0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := fullConfig()
				if tt.edit != nil {
					tt.edit(&cfg)
				}
				r := start(t, cfg, newFakeHW())
				defer r.stop()
				r.hold(tt.button, tt.hold)
				r.sleep(time.Minute)
				r.wantActions(tt.want[0], tt.want[1], tt.want[2])
			})
		})
	}
}

// TestControllerFactoryResetLEDs follows the LEDs through a 10 s hold: the state's look for
// 3 s, the countdown (both blinking at 4 Hz) until 10 s, then FactoryReset and both solid.
func TestControllerFactoryResetLEDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := start(t, fullConfig(), newFakeHW())
		defer r.stop()
		r.c.SetState(StateStreaming)
		r.sleep(time.Second)
		t0 := time.Now()
		r.hw.in("BTN_PRIVACY").set(true)
		r.sleep(10*time.Second - ms)
		r.wantActions(0, 0, 0)
		r.sleep(ms)
		r.wantActions(0, 0, 1)
		if s := r.c.State(); s != StateResetting {
			t.Errorf("State() = %v after the long press, want resetting", s)
		}
		r.sleep(2 * time.Second)
		r.hw.in("BTN_PRIVACY").set(false)
		r.sleep(time.Second)
		r.wantActions(0, 0, 1)

		// Green was on (streaming) and red off; the countdown blinks both from 3 s, starting
		// on, so green has no change at 3 s; at 10 s both come on for StateResetting.
		greenWant, redWant := []string{"true@0s"}, []string{"false@0s"}
		for i := range 56 { // 3 s to 10 s, a change every 125 ms
			change := fmt.Sprintf("%v@%v", i%2 == 0, 3*time.Second+time.Duration(i)*125*ms)
			if i > 0 {
				greenWant = append(greenWant, change)
			}
			redWant = append(redWant, change)
		}
		greenWant = append(greenWant, "true@10s")
		redWant = append(redWant, "true@10s")
		if got := r.hw.out("LED_GREEN").changes(t0, t0.Add(13*time.Second)); !slices.Equal(got, greenWant) {
			t.Errorf("green LED\n got %v\nwant %v", got, greenWant)
		}
		if got := r.hw.out("gpiochip1:0").changes(t0, t0.Add(13*time.Second)); !slices.Equal(got, redWant) {
			t.Errorf("red LED\n got %v\nwant %v", got, redWant)
		}
	})
}

// TestControllerResetCancelledLEDs: releasing during the countdown puts the state's look back.
func TestControllerResetCancelledLEDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := start(t, fullConfig(), newFakeHW())
		defer r.stop()
		r.c.SetState(StateMuted)
		r.sleep(time.Second)
		r.hw.in("BTN_PRIVACY").set(true)
		r.sleep(4 * time.Second)
		r.hw.in("BTN_PRIVACY").set(false)
		r.sleep(ms)
		t0 := time.Now()
		r.sleep(30 * time.Second)
		r.wantActions(0, 0, 0)
		if got, want := r.hw.out("LED_GREEN").changes(t0, time.Now()), []string{"false@0s"}; !slices.Equal(got, want) {
			t.Errorf("green LED after cancelling: %v, want %v (muted)", got, want)
		}
		if got, want := r.hw.out("gpiochip1:0").changes(t0, time.Now()), []string{"true@0s"}; !slices.Equal(got, want) {
			t.Errorf("red LED after cancelling: %v, want %v (muted)", got, want)
		}
	})
}

func TestControllerLEDStates(t *testing.T) {
	type want struct{ green, red, mono []string } // changes over 2.5 s after SetState
	tests := []struct {
		state State
		want  want
	}{
		{StateBooting, want{
			green: []string{"true@0s", "false@500ms", "true@1s", "false@1.5s", "true@2s"},
			red:   []string{"false@0s"},
			mono:  []string{"true@0s", "false@500ms", "true@1s", "false@1.5s", "true@2s"}}},
		{StateReady, want{
			green: []string{"true@0s", "false@100ms", "true@2s", "false@2.1s"},
			red:   []string{"false@0s"},
			mono:  []string{"true@0s", "false@100ms", "true@2s", "false@2.1s"}}},
		{StateStreaming, want{green: []string{"true@0s"}, red: []string{"false@0s"}, mono: []string{"true@0s"}}},
		{StateMuted, want{
			green: []string{"false@0s"},
			red:   []string{"true@0s"},
			mono:  []string{"true@0s", "false@100ms", "true@250ms", "false@350ms", "true@2s", "false@2.1s", "true@2.25s", "false@2.35s"}}},
		{StateError, want{
			green: []string{"false@0s"},
			red:   []string{"true@0s", "false@500ms", "true@1s", "false@1.5s", "true@2s"},
			mono:  []string{"true@0s", "false@250ms", "true@500ms", "false@750ms", "true@1s", "false@1.25s", "true@1.5s", "false@1.75s", "true@2s", "false@2.25s"}}},
		{StateResetting, want{green: []string{"true@0s"}, red: []string{"true@0s"}, mono: []string{"true@0s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.state.String(), func(t *testing.T) {
			for _, leds := range []string{"two", "green only", "red only"} {
				t.Run(leds, func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						cfg := fullConfig()
						switch leds {
						case "green only":
							cfg.LEDRed = ""
						case "red only":
							cfg.LEDGreen = ""
						}
						r := start(t, cfg, newFakeHW())
						defer r.stop()
						if tt.state == StateBooting {
							r.c.SetState(StateStreaming) // so that booting starts anew below
						}
						r.sleep(time.Second + 10*ms)
						t0 := time.Now()
						r.c.SetState(tt.state)
						r.sleep(2500 * ms)
						check := func(spec string, want []string) {
							t.Helper()
							if got := r.hw.out(spec).changes(t0, t0.Add(2500*ms)); !slices.Equal(got, want) {
								t.Errorf("%s\n got %v\nwant %v", spec, got, want)
							}
						}
						switch leds {
						case "two":
							check("LED_GREEN", tt.want.green)
							check("gpiochip1:0", tt.want.red)
						case "green only":
							check("LED_GREEN", tt.want.mono)
						case "red only":
							check("gpiochip1:0", tt.want.mono)
						}
					})
				})
			}
		})
	}
}

// TestControllerSameStateKeepsRhythm: setting the state shown again does not restart its
// pattern (the daemon may set its state on every status tick).
func TestControllerSameStateKeepsRhythm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := fullConfig()
		r := start(t, cfg, newFakeHW())
		defer r.stop()
		t0 := time.Now()
		for range 10 {
			r.sleep(90 * ms)
			r.c.SetState(StateBooting)
		}
		r.sleep(200 * ms)
		want := []string{"true@0s", "false@500ms", "true@1s"}
		if got := r.hw.out("LED_GREEN").changes(t0, time.Now()); !slices.Equal(got, want) {
			t.Errorf("green LED %v, want %v", got, want)
		}
	})
}

func TestControllerDebounce(t *testing.T) {
	bounce := func(in *fakeIn) {
		for _, level := range []bool{true, false, true, false, true} {
			in.set(level)
			time.Sleep(3 * ms)
		}
		time.Sleep(200 * ms)
		for _, level := range []bool{false, true, false, true, false} {
			in.set(level)
			time.Sleep(3 * ms)
		}
	}
	tests := []struct {
		name     string
		softOnly bool
		debounce time.Duration
		want     int
	}{
		// The kernel filters bounces: the test's bouncing edges all get through to the Controller.
		{"kernel debounces", false, 30 * ms, 5},
		{"software debounce", true, 30 * ms, 1},
		{"no debounce", true, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hw := newFakeHW()
				hw.softOnly = tt.softOnly
				cfg := fullConfig()
				cfg.Debounce = tt.debounce
				r := start(t, cfg, hw)
				defer r.stop()
				in := hw.in("BTN_PRIVACY")
				if in.opts.debounce != tt.debounce {
					t.Errorf("line requested with debounce %v, want %v", in.opts.debounce, tt.debounce)
				}
				bounce(in)
				r.sleep(time.Second)
				r.wantActions(tt.want, 0, 0)
			})
		})
	}
}

func TestControllerInputOptions(t *testing.T) {
	tests := []struct {
		bias      string
		activeLow bool
		want      bias
	}{
		{"", true, biasPullUp},
		{"auto", true, biasPullUp},
		{"auto", false, biasPullDown},
		{"pull-up", false, biasPullUp},
		{"pull-down", true, biasPullDown},
		{"disabled", true, biasDisabled},
		{"as-is", true, biasAsIs},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s active low %v", tt.bias, tt.activeLow), func(t *testing.T) {
			hw := newFakeHW()
			cfg := fullConfig()
			cfg.ButtonBias, cfg.ButtonActiveLow, cfg.LEDActiveLow = tt.bias, tt.activeLow, true
			c, err := newController(cfg, nil, nil, hw)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			o := hw.in("BTN_PRIVACY").opts
			if o.bias != tt.want || o.activeLow != tt.activeLow {
				t.Errorf("input options %+v, want bias %v, active low %v", o, tt.want, tt.activeLow)
			}
			if !hw.out("LED_GREEN").activeLow {
				t.Error("LED not requested active low")
			}
		})
	}
}

// TestControllerHeldAtStart: a button that reads pressed when requested (held, or a wrong
// button_active_low) warns once and counts only from its next press.
func TestControllerHeldAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hw := newFakeHW()
		hw.heldStart["BTN_PRIVACY"] = true
		r := start(t, fullConfig(), hw)
		defer r.stop()
		r.sleep(time.Minute)
		hw.in("BTN_PRIVACY").set(false)
		r.sleep(time.Second)
		r.wantActions(0, 0, 0)
		r.hold("BTN_PRIVACY", 100*ms)
		r.wantActions(1, 0, 0)
		if n := countLines(r.log.lines(), "level=WARN"); n != 1 {
			t.Errorf("%d warnings, want 1:\n%s", n, strings.Join(r.log.lines(), "\n"))
		}
	})
}

// TestControllerActionsMaySetState: an action that sets the state (as the daemon will) does
// not deadlock, and its state wins over StateResetting.
func TestControllerActionsMaySetState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := start(t, fullConfig(), newFakeHW())
		defer r.stop()
		r.acts.mu.Lock()
		r.acts.onReset = func() { r.c.SetState(StateBooting) }
		r.acts.mu.Unlock()
		r.hold("BTN_PRIVACY", 11*time.Second)
		r.wantActions(0, 0, 1)
		if s := r.c.State(); s != StateBooting {
			t.Errorf("State() = %v, want booting", s)
		}
	})
}

func countLines(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// TestControllerMissingHardware: missing GPIO is one log line and a Controller that works
// without it; never an error.
func TestControllerMissingHardware(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		setup    func(*fakeHW)
		level    string // of the one log line
		contains []string
		active   bool
	}{
		{"nothing configured", Config{Debounce: 30 * ms, LongPress: 10 * time.Second}, nil,
			"level=DEBUG", []string{"GPIO off: no buttons or LEDs configured"}, false},
		{"no GPIO chips", fullConfig(), func(h *fakeHW) { h.missing = errors.New("no GPIO chips") },
			"level=WARN", []string{"GPIO unavailable: running without buttons and LEDs", `reason="no GPIO chips"`, "privacy_button=BTN_PRIVACY", "led_red=gpiochip1:0"}, false},
		{"not Linux", fullConfig(), func(h *fakeHW) { h.missing = fmt.Errorf("needs Linux: %w", errors.ErrUnsupported) },
			"level=WARN", []string{"GPIO unavailable", "needs Linux: unsupported operation"}, false},
		{"no line found", fullConfig(), func(h *fakeHW) {
			for _, l := range []string{"BTN_PRIVACY", "gpiochip0:2", "LED_GREEN", "gpiochip1:0"} {
				h.fail[l] = errLineNotFound
			}
		}, "level=WARN", []string{"GPIO unavailable: running without buttons and LEDs", `call_button=gpiochip0:2: line not found`}, false},
		{"some lines missing", fullConfig(), func(h *fakeHW) {
			h.fail["BTN_PRIVACY"] = errLineNotFound
			h.fail["gpiochip1:0"] = fmt.Errorf("/dev/gpiochip1: %w", fs.ErrPermission)
		}, "level=WARN", []string{"some GPIO lines unavailable: running without them",
			"privacy_button=BTN_PRIVACY: line not found", "led_red=gpiochip1:0: /dev/gpiochip1: permission denied",
			`using="led_green=LED_GREEN call_button=gpiochip0:2"`}, true},
		{"all there", fullConfig(), nil, "level=INFO", []string{"GPIO buttons and LEDs ready"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hw := newFakeHW()
				if tt.setup != nil {
					tt.setup(hw)
				}
				r := start(t, tt.cfg, hw)
				r.c.SetState(StateStreaming)
				r.sleep(time.Minute)
				r.stop()
				lines := r.log.lines()
				if len(lines) != 1 || !strings.Contains(lines[0], tt.level) {
					t.Fatalf("want one %s line, got:\n%s", tt.level, strings.Join(lines, "\n"))
				}
				for _, s := range tt.contains {
					if !strings.Contains(lines[0], s) {
						t.Errorf("log line %s\ndoes not contain %s", lines[0], s)
					}
				}
				if r.c.Active() != tt.active {
					t.Errorf("Active() = %v, want %v", r.c.Active(), tt.active)
				}
			})
		})
	}
}

func TestControllerCallButtonWithoutLEDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := start(t, Config{CallButton: "CALL", LongPress: 10 * time.Second}, newFakeHW())
		defer r.stop()
		r.hold("CALL", 50*ms)
		r.hold("CALL", 50*ms)
		r.wantActions(0, 2, 0)
	})
}

func TestControllerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hw := newFakeHW()
		r := start(t, fullConfig(), hw)
		r.c.SetState(StateResetting) // both on
		r.sleep(time.Second)
		r.stop() // cancels Run, then Close
		for _, spec := range []string{"LED_GREEN", "gpiochip1:0"} {
			if out := hw.out(spec); out.on() || !out.closed {
				t.Errorf("%s: on %v, closed %v after Close; want off and closed", spec, out.on(), out.closed)
			}
		}
		for _, spec := range []string{"BTN_PRIVACY", "gpiochip0:2"} {
			if !hw.in(spec).closed {
				t.Errorf("%s not closed", spec)
			}
		}
		if err := r.c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := r.c.Run(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("Run after Close = %v, want ErrClosed", err)
		}
	})
}

// TestControllerCloseStopsRun: Close while Run runs (no cancel) returns once Run has.
func TestControllerCloseStopsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hw := newFakeHW()
		c, err := newController(fullConfig(), nil, nil, hw)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Run(context.Background()) }()
		synctest.Wait()
		if err := c.Run(context.Background()); err == nil {
			t.Error("a second Run at the same time succeeded")
		}
		hw.in("BTN_PRIVACY").set(true) // an edge in flight must not block Close
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		default:
			t.Error("Close returned before Run")
		}
	})
}

// TestControllerEdgesAfterRunStopped: the lines' goroutines never block on a Controller
// that has stopped running, once it is closed.
func TestControllerEdgesAfterRunStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hw := newFakeHW()
		c, err := newController(fullConfig(), nil, nil, hw)
		if err != nil {
			t.Fatal(err)
		}
		in := hw.in("BTN_PRIVACY")
		sent := make(chan struct{})
		go func() {
			for i := range 200 { // more than the channel holds, with no Run
				in.set(i%2 == 0)
			}
			close(sent)
		}()
		synctest.Wait()
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		<-sent
	})
}

func TestControllerLEDWriteFailureLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hw := newFakeHW()
		r := start(t, fullConfig(), hw)
		defer r.stop()
		hw.out("LED_GREEN").mu.Lock()
		hw.out("LED_GREEN").failing = errors.New("EIO")
		hw.out("LED_GREEN").mu.Unlock()
		r.sleep(10 * time.Second) // booting: 20 changes
		if n := countLines(r.log.lines(), "GPIO LED write failed"); n != 1 {
			t.Errorf("%d write failure lines, want 1", n)
		}
		r.hw.out("LED_GREEN").mu.Lock()
		r.hw.out("LED_GREEN").failing = nil
		r.hw.out("LED_GREEN").mu.Unlock()
	})
}

func TestNewInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"bad chip offset", func(c *Config) { c.CallButton = "gpiochip0:x" }},
		{"name too long", func(c *Config) { c.LEDGreen = strings.Repeat("n", 40) }},
		{"bias", func(c *Config) { c.ButtonBias = "up" }},
		{"negative debounce", func(c *Config) { c.Debounce = -ms }},
		{"negative long press", func(c *Config) { c.LongPress = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fullConfig()
			tt.edit(&cfg)
			if _, err := newController(cfg, nil, nil, newFakeHW()); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("newController = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestSetStateUnknownIgnored(t *testing.T) {
	var log logBuf
	c, err := newController(Config{}, nil, log.logger(), newFakeHW())
	if err != nil {
		t.Fatal(err)
	}
	c.SetState(StateMuted)
	c.SetState(State(42))
	if c.State() != StateMuted {
		t.Errorf("State() = %v, want muted", c.State())
	}
	if n := countLines(log.lines(), "unknown LED state"); n != 1 {
		t.Errorf("%d warnings about the unknown state, want 1", n)
	}
}

// TestControllerLateRun: edges that wait in the queue (Run started late, or busy) are taken
// at the times they happened.
func TestControllerLateRun(t *testing.T) {
	tests := []struct {
		name     string
		softOnly bool
		hold     time.Duration
		want     int
	}{
		{"press, kernel debounce", false, 200 * ms, 1},
		{"press, software debounce", true, 200 * ms, 1},
		{"glitch, software debounce", true, 5 * ms, 0},
		{"held too long for a short press", true, 1500 * ms, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hw := newFakeHW()
				hw.softOnly = tt.softOnly
				acts := &counter{}
				c, err := newController(fullConfig(), acts, nil, hw)
				if err != nil {
					t.Fatal(err)
				}
				in := hw.in("BTN_PRIVACY")
				in.set(true)
				time.Sleep(tt.hold)
				in.set(false)
				time.Sleep(5 * time.Second)
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() { done <- c.Run(ctx) }()
				time.Sleep(time.Second)
				cancel()
				<-done
				c.Close()
				if p, _, _ := acts.counts(); p != tt.want {
					t.Errorf("TogglePrivacy called %d times, want %d", p, tt.want)
				}
			})
		})
	}
}

// TestNewLightsBooting: New shows StateBooting before Run starts: green on (its blink starts
// on), red off; a lone LED, whatever its colour, on.
func TestNewLightsBooting(t *testing.T) {
	tests := []struct {
		name               string
		green, red         string
		wantGreen, wantRed bool
	}{
		{"two LEDs", "LED_GREEN", "LED_RED", true, false},
		{"red only", "", "LED_RED", false, true},
		{"green only", "LED_GREEN", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hw := newFakeHW()
			c, err := newController(Config{LEDGreen: tt.green, LEDRed: tt.red}, nil, nil, hw)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.green != "" && hw.out(tt.green).on() != tt.wantGreen {
				t.Errorf("green LED on = %v, want %v", hw.out(tt.green).on(), tt.wantGreen)
			}
			if tt.red != "" && hw.out(tt.red).on() != tt.wantRed {
				t.Errorf("red LED on = %v, want %v", hw.out(tt.red).on(), tt.wantRed)
			}
		})
	}
}
