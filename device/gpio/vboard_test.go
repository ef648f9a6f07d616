//go:build vboardguest

// In-guest tests: the virtual board (internal/vboard) builds these with -tags vboardguest and
// runs them as root inside QEMU. On the x86_64 board, lines come from gpio-sim (configfs):
// a button is pressed by pulling its simulated line, an LED is read back from the simulated
// line's value. On the arm64 board, TestVBoardPL061Button waits for the host to press the
// virt machine's power button (PL061 line 3) over QMP.

package gpio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warthog618/go-gpiocdev"
)

const simRoot = "/sys/kernel/config/gpio-sim"

// simChip is a gpio-sim chip made through configfs for one test.
type simChip struct {
	t     *testing.T
	name  string // the chip, e.g. "gpiochip0"
	sysfs string // /sys/devices/platform/gpio-sim.N/gpiochipM
}

// newSimChip makes a live gpio-sim chip with the given line names (offset = index; "" for
// an unnamed line) and removes it when the test ends. It skips the test without gpio-sim.
func newSimChip(t *testing.T, names ...string) *simChip {
	t.Helper()
	if os.Getenv("VBOARD") == "" {
		t.Skip("not on the virtual board (VBOARD unset)")
	}
	if _, err := os.Stat(simRoot); err != nil {
		t.Skipf("no gpio-sim in this kernel (%v)", err)
	}
	dir := filepath.Join(simRoot, "edged-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	bank := filepath.Join(dir, "bank0")
	var made []string // directories to remove, in order
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(dir, "live"), []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("gpio-sim: live=0: %v", err)
		}
		for i := len(made) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(made[i]); err != nil {
				t.Errorf("gpio-sim: rmdir %s: %v", made[i], err)
			}
		}
	})
	mkdir := func(p string) {
		t.Helper()
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatalf("gpio-sim: %v", err)
		}
		made = append(made, p)
	}
	write := func(p, v string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			t.Fatalf("gpio-sim: %s=%s: %v", p, v, err)
		}
	}
	mkdir(dir)
	mkdir(bank)
	write(filepath.Join(bank, "num_lines"), strconv.Itoa(len(names)))
	for i, n := range names {
		if n == "" {
			continue
		}
		line := filepath.Join(bank, "line"+strconv.Itoa(i))
		mkdir(line)
		write(filepath.Join(line, "name"), n)
	}
	write(filepath.Join(dir, "live"), "1")
	chip, dev := readTrim(t, filepath.Join(bank, "chip_name")), readTrim(t, filepath.Join(dir, "dev_name"))
	s := &simChip{t: t, name: chip, sysfs: filepath.Join("/sys/devices/platform", dev, chip)}
	t.Logf("gpio-sim chip %s (%s) with lines %q", chip, s.sysfs, names)
	return s
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// line returns "gpiochipN:offset" for the Config.
func (s *simChip) line(offset int) string { return s.name + ":" + strconv.Itoa(offset) }

// pull sets the simulated pull of an input line: "pull-up" or "pull-down".
func (s *simChip) pull(offset int, pull string) {
	s.t.Helper()
	p := filepath.Join(s.sysfs, "sim_gpio"+strconv.Itoa(offset), "pull")
	if err := os.WriteFile(p, []byte(pull), 0); err != nil {
		s.t.Fatalf("gpio-sim: %s=%s: %v", p, pull, err)
	}
}

// press and release a button wired active low (pressed = pulled to ground).
func (s *simChip) press(offset int)   { s.pull(offset, "pull-down") }
func (s *simChip) release(offset int) { s.pull(offset, "pull-up") }

// value reads the physical level of a line (an LED output): 0 or 1.
func (s *simChip) value(offset int) int {
	s.t.Helper()
	v := readTrim(s.t, filepath.Join(s.sysfs, "sim_gpio"+strconv.Itoa(offset), "value"))
	n, err := strconv.Atoi(v)
	if err != nil {
		s.t.Fatalf("gpio-sim value %q: %v", v, err)
	}
	return n
}

// sample reads the LED lines every 5 ms for d and returns their levels over time.
type sampled struct {
	at     time.Duration
	levels []int
}

func (s *simChip) sample(d time.Duration, offsets ...int) []sampled {
	var out []sampled
	start := time.Now()
	for time.Since(start) < d {
		lv := make([]int, len(offsets))
		for i, o := range offsets {
			lv[i] = s.value(o)
		}
		out = append(out, sampled{time.Since(start), lv})
		time.Sleep(5 * time.Millisecond)
	}
	return out
}

// summary describes one line's samples: "on", "off", or "blinks N changes".
func summary(samples []sampled, i int) (desc string, changes int) {
	ons := 0
	for j, s := range samples {
		ons += s.levels[i]
		if j > 0 && s.levels[i] != samples[j-1].levels[i] {
			changes++
		}
	}
	switch {
	case ons == len(samples):
		return "on", 0
	case ons == 0:
		return "off", 0
	}
	return "blinks", changes
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running is a Controller on the real character device, run until the test ends.
type running struct {
	c    *Controller
	acts *counter
	log  *logBuf
}

func runController(t *testing.T, cfg Config) *running {
	t.Helper()
	r := &running{acts: &counter{}, log: &logBuf{}}
	c, err := New(cfg, r.acts, r.log.logger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Logf("log:\n%s", strings.Join(r.log.lines(), "\n"))
	})
	return r
}

func (r *running) wantActions(t *testing.T, privacy, call, resets int) {
	t.Helper()
	p, c, x := r.acts.counts()
	if p != privacy || c != call || x != resets {
		t.Errorf("actions: privacy %d, call %d, reset %d; want %d, %d, %d", p, c, x, privacy, call, resets)
	}
}

// Offsets of the simulated board's lines.
const (
	offPrivacy = 0
	offCall    = 1
	offReset   = 2
	offGreen   = 4
	offRed     = 5
)

// board makes a gpio-sim chip laid out like an appliance, with its lines named
// <prefix>_PRIVACY and so on, buttons released, and a Config using the names.
func board(t *testing.T, prefix string) (*simChip, Config) {
	t.Helper()
	s := newSimChip(t, prefix+"_PRIVACY", prefix+"_CALL", prefix+"_RESET", "", prefix+"_GREEN", prefix+"_RED", "", "")
	for _, o := range []int{offPrivacy, offCall, offReset} {
		s.release(o) // the pull-ups of the buttons
	}
	cfg := Config{
		PrivacyButton: prefix + "_PRIVACY", CallButton: prefix + "_CALL",
		ButtonActiveLow: true, ButtonBias: "auto", Debounce: 30 * time.Millisecond, LongPress: 10 * time.Second,
		LEDGreen: prefix + "_GREEN", LEDRed: prefix + "_RED",
	}
	return s, cfg
}

func TestVBoardLineByName(t *testing.T) {
	s, cfg := board(t, "BYNAME")
	r := runController(t, cfg)
	if !r.c.Active() {
		t.Fatal("Controller holds no line")
	}
	if got := r.log.lines(); len(got) != 1 || !strings.Contains(got[0], "GPIO buttons and LEDs ready") {
		t.Errorf("want one line saying GPIO is ready, got:\n%s", strings.Join(got, "\n"))
	}
	// The kernel shows the lines as edged's, configured as asked.
	chip, err := gpiocdev.NewChip(s.name)
	if err != nil {
		t.Fatal(err)
	}
	defer chip.Close()
	for _, tt := range []struct {
		offset    int
		direction gpiocdev.LineDirection
	}{{offPrivacy, gpiocdev.LineDirectionInput}, {offCall, gpiocdev.LineDirectionInput},
		{offGreen, gpiocdev.LineDirectionOutput}, {offRed, gpiocdev.LineDirectionOutput}} {
		info, err := chip.LineInfo(tt.offset)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("line %d: %+v", tt.offset, info)
		if !info.Used || info.Consumer != consumer || info.Config.Direction != tt.direction {
			t.Errorf("line %d (%s): used %v by %q, direction %v; want used by %q, direction %v",
				tt.offset, info.Name, info.Used, info.Consumer, info.Config.Direction, consumer, tt.direction)
		}
		if tt.direction == gpiocdev.LineDirectionInput &&
			(!info.Config.ActiveLow || info.Config.Bias != gpiocdev.LineBiasPullUp || info.Config.EdgeDetection != gpiocdev.LineEdgeBoth) {
			t.Errorf("button line %d: %+v; want active low, pull-up, both edges", tt.offset, info.Config)
		}
	}
	if info, _ := chip.LineInfo(offReset); info.Used {
		t.Errorf("the reset line is held, but no reset button is configured")
	}
	// Booting: the green LED found by name blinks, starting on.
	if v := s.value(offGreen); v != 1 {
		t.Errorf("green LED reads %d right after New, want 1 (booting starts on)", v)
	}
	s.press(offCall)
	time.Sleep(150 * time.Millisecond)
	s.release(offCall)
	waitFor(t, 2*time.Second, "the call button found by name", func() bool { _, c, _ := r.acts.counts(); return c == 1 })
}

func TestVBoardPrivacyButton(t *testing.T) {
	s, cfg := board(t, "PRIV")
	cfg.LEDGreen, cfg.LEDRed = s.line(offGreen), s.line(offRed) // and by chip:offset
	r := runController(t, cfg)
	r.acts.mu.Lock()
	r.acts.onPrivacy = func() { r.c.SetState(StateMuted) } // what the daemon does
	r.acts.mu.Unlock()
	r.c.SetState(StateStreaming)
	waitFor(t, time.Second, "streaming: green on, red off", func() bool { return s.value(offGreen) == 1 && s.value(offRed) == 0 })

	s.press(offPrivacy)
	time.Sleep(200 * time.Millisecond)
	s.release(offPrivacy)
	waitFor(t, 2*time.Second, "TogglePrivacy", func() bool { p, _, _ := r.acts.counts(); return p == 1 })
	waitFor(t, time.Second, "muted: green off, red on", func() bool { return s.value(offGreen) == 0 && s.value(offRed) == 1 })
	time.Sleep(time.Second)
	r.wantActions(t, 1, 0, 0)
	if d, _ := summary(s.sample(500*time.Millisecond, offGreen, offRed), 1); d != "on" {
		t.Errorf("red LED %s while muted, want on", d)
	}
}

func TestVBoardCallButton(t *testing.T) {
	s, cfg := board(t, "CALL")
	r := runController(t, cfg)
	for i, hold := range []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 1500 * time.Millisecond} {
		s.press(offCall)
		time.Sleep(hold)
		s.release(offCall)
		waitFor(t, 2*time.Second, fmt.Sprintf("ToggleCall #%d (held %v)", i+1, hold), func() bool { _, c, _ := r.acts.counts(); return c == i+1 })
		time.Sleep(100 * time.Millisecond)
	}
	r.wantActions(t, 0, 3, 0)
}

// TestVBoardLongPressFactoryReset holds the privacy button for the default 10 s.
func TestVBoardLongPressFactoryReset(t *testing.T) {
	s, cfg := board(t, "RESET")
	r := runController(t, cfg)
	resets := make(chan time.Time, 2)
	r.acts.mu.Lock()
	r.acts.onReset = func() { resets <- time.Now() }
	r.acts.mu.Unlock()
	r.c.SetState(StateStreaming)
	waitFor(t, time.Second, "streaming: green on, red off", func() bool { return s.value(offGreen) == 1 && s.value(offRed) == 0 })

	pressed := time.Now()
	s.press(offPrivacy)
	samples := s.sample(11*time.Second, offGreen, offRed)
	s.release(offPrivacy)
	time.Sleep(time.Second)
	r.wantActions(t, 0, 0, 1)
	if at := (<-resets).Sub(pressed); at < 10*time.Second || at > 10500*time.Millisecond {
		t.Errorf("FactoryReset %v after the press, want at 10 s (the kernel reports the press 30 ms late, after debouncing)", at)
	}
	window := func(from, to time.Duration) []sampled {
		var w []sampled
		for _, x := range samples {
			if x.at >= from && x.at < to {
				w = append(w, x)
			}
		}
		return w
	}
	// Before the countdown: streaming. During it: both blink at 4 Hz. After the reset
	// started: both on.
	for _, tt := range []struct {
		name     string
		from, to time.Duration
		green    string
		red      string
	}{
		{"before the countdown", 0, 2900 * time.Millisecond, "on", "off"},
		{"countdown", 3200 * time.Millisecond, 9900 * time.Millisecond, "blinks", "blinks"},
		{"resetting", 10300 * time.Millisecond, 11 * time.Second, "on", "on"},
	} {
		w := window(tt.from, tt.to)
		g, gn := summary(w, 0)
		rd, rn := summary(w, 1)
		t.Logf("%s (%v..%v, %d samples): green %s (%d changes), red %s (%d changes)", tt.name, tt.from, tt.to, len(w), g, gn, rd, rn)
		if g != tt.green || rd != tt.red {
			t.Errorf("%s: green %s, red %s; want %s, %s", tt.name, g, rd, tt.green, tt.red)
		}
		// 6.7 s at 4 Hz is 53 changes; sampling under emulation may miss a few.
		if tt.green == "blinks" && (gn < 30 || rn < 30) {
			t.Errorf("%s: %d and %d changes, want about 53 (4 Hz)", tt.name, gn, rn)
		}
	}
	if s := r.c.State(); s != StateResetting {
		t.Errorf("State() = %v after the long press, want resetting", s)
	}
}

func TestVBoardLongPressCancelled(t *testing.T) {
	s, cfg := board(t, "CANCEL")
	cfg.LongPress = 2 * time.Second // the countdown shows from 1 s
	r := runController(t, cfg)
	r.c.SetState(StateStreaming)
	waitFor(t, time.Second, "streaming: green on, red off", func() bool { return s.value(offGreen) == 1 && s.value(offRed) == 0 })

	s.press(offPrivacy)
	samples := s.sample(1700*time.Millisecond, offGreen, offRed)
	s.release(offPrivacy)
	var countdown []sampled
	for _, x := range samples {
		if x.at > 1100*time.Millisecond {
			countdown = append(countdown, x)
		}
	}
	if d, _ := summary(countdown, 1); d != "blinks" {
		t.Errorf("red LED %s during the countdown, want blinks", d)
	}
	time.Sleep(2 * time.Second)
	r.wantActions(t, 0, 0, 0)
	after := s.sample(time.Second, offGreen, offRed)
	if g, _ := summary(after, 0); g != "on" {
		t.Errorf("green LED %s after cancelling, want on (streaming)", g)
	}
	if rd, _ := summary(after, 1); rd != "off" {
		t.Errorf("red LED %s after cancelling, want off (streaming)", rd)
	}
	if !strings.Contains(strings.Join(r.log.lines(), "\n"), "factory reset cancelled") {
		t.Error("no log line says the factory reset was cancelled")
	}
}

func TestVBoardLEDStates(t *testing.T) {
	s, cfg := board(t, "LEDS")
	r := runController(t, cfg)
	for _, tt := range []struct {
		state      State
		green, red string
	}{
		{StateReady, "blinks", "off"},
		{StateStreaming, "on", "off"},
		{StateMuted, "off", "on"},
		{StateError, "off", "blinks"},
		{StateResetting, "on", "on"},
		{StateBooting, "blinks", "off"},
	} {
		t.Run(tt.state.String(), func(t *testing.T) {
			r.c.SetState(tt.state)
			time.Sleep(50 * time.Millisecond) // Run takes it up
			samples := s.sample(1200*time.Millisecond, offGreen, offRed)
			g, gn := summary(samples, 0)
			rd, rn := summary(samples, 1)
			t.Logf("%d samples: green %s (%d changes), red %s (%d changes)", len(samples), g, gn, rd, rn)
			if g != tt.green || rd != tt.red {
				t.Errorf("green %s, red %s; want %s, %s", g, rd, tt.green, tt.red)
			}
		})
	}
	t.Run("active low", func(t *testing.T) {
		r.c.Close()
		cfg.LEDActiveLow = true
		r := runController(t, cfg)
		r.c.SetState(StateMuted)
		waitFor(t, time.Second, "muted, active low: green line high (off), red line low (on)", func() bool {
			return s.value(offGreen) == 1 && s.value(offRed) == 0
		})
	})
}

func TestVBoardMissingLine(t *testing.T) {
	s, cfg := board(t, "MISSING")
	t.Run("one of several", func(t *testing.T) {
		cfg := cfg
		cfg.PrivacyButton = "NO_SUCH_LINE"
		r := runController(t, cfg)
		lines := r.log.lines()
		if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") ||
			!strings.Contains(lines[0], `no line named \"NO_SUCH_LINE\"`) {
			t.Fatalf("want one warning naming the missing line, got:\n%s", strings.Join(lines, "\n"))
		}
		if !r.c.Active() {
			t.Error("the lines that exist are not used")
		}
		s.press(offCall)
		time.Sleep(100 * time.Millisecond)
		s.release(offCall)
		waitFor(t, 2*time.Second, "the call button", func() bool { _, c, _ := r.acts.counts(); return c == 1 })
	})
	t.Run("all", func(t *testing.T) {
		r := runController(t, Config{PrivacyButton: "NO_SUCH_BUTTON", LEDGreen: s.name + ":99", LongPress: 10 * time.Second})
		r.c.SetState(StateStreaming)
		time.Sleep(200 * time.Millisecond)
		lines := r.log.lines()
		if len(lines) != 1 || !strings.Contains(lines[0], "GPIO unavailable: running without buttons and LEDs") ||
			!strings.Contains(lines[0], "has lines 0..7") {
			t.Fatalf("want one warning, got:\n%s", strings.Join(lines, "\n"))
		}
		if r.c.Active() {
			t.Error("Active() with no line found")
		}
	})
	t.Run("in use", func(t *testing.T) {
		other, err := gpiocdev.RequestLine(s.name, offRed, gpiocdev.AsOutput(0), gpiocdev.WithConsumer("other-daemon"))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		r := runController(t, cfg)
		lines := r.log.lines()
		if len(lines) != 1 || !strings.Contains(lines[0], `is in use by \"other-daemon\"`) {
			t.Fatalf("want one warning naming the line's holder, got:\n%s", strings.Join(lines, "\n"))
		}
	})
}

// TestVBoardPL061Button runs on the arm64 board: the host sends QMP system_powerdown, which
// QEMU's virt machine turns into a 100 ms pulse on PL061 line 3 (its power button).
func TestVBoardPL061Button(t *testing.T) {
	if os.Getenv("VBOARD") == "" {
		t.Skip("not on the virtual board (VBOARD unset)")
	}
	chip, err := gpiocdev.NewChip("gpiochip0")
	if err != nil {
		t.Skipf("no gpiochip0: %v", err)
	}
	label := chip.Label
	chip.Close()
	dev, _ := filepath.EvalSymlinks("/sys/bus/gpio/devices/gpiochip0")
	if !strings.Contains(label, "pl061") && !strings.Contains(dev, "pl061") {
		t.Skipf("gpiochip0 is %q (%s), not a PL061", label, dev)
	}
	t.Logf("gpiochip0: label %q, device %s", label, dev)

	hw := &edgeRecorder{hardware: cdev{}, edges: make(chan string, 16)}
	acts := &counter{}
	var log logBuf
	c, err := newController(Config{CallButton: "gpiochip0:3", ButtonBias: "as-is", Debounce: 30 * time.Millisecond,
		LongPress: 10 * time.Second}, acts, log.logger(), hw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		c.Close()
		t.Logf("log:\n%s", strings.Join(log.lines(), "\n"))
	}()
	if !c.Active() {
		t.Fatalf("line 3 of the PL061 not usable:\n%s", strings.Join(log.lines(), "\n"))
	}
	fmt.Println("VBOARD-READY-FOR-BUTTON")
	os.Stdout.Sync()

	var got []string
	deadline := time.After(60 * time.Second)
	for len(got) < 2 {
		select {
		case e := <-hw.edges:
			t.Logf("edge: %s", e)
			got = append(got, e)
		case <-deadline:
			t.Fatalf("edges seen in 60 s: %v; want rising and falling (was QMP system_powerdown sent?)", got)
		}
	}
	if got[0] != "rising" || got[1] != "falling" {
		t.Errorf("edges %v, want rising then falling", got)
	}
	waitFor(t, 2*time.Second, "ToggleCall from the power button pulse", func() bool { _, n, _ := acts.counts(); return n == 1 })
}

// edgeRecorder passes lines through, reporting each raw edge of the inputs.
type edgeRecorder struct {
	hardware
	edges chan string
}

func (h *edgeRecorder) input(l lineSpec, o inputOptions, onEdge func(bool)) (inputLine, bool, error) {
	return h.hardware.input(l, o, func(active bool) {
		e := "falling"
		if active {
			e = "rising"
		}
		select {
		case h.edges <- e:
		default:
		}
		onEdge(active)
	})
}
