package gpio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("gpio: controller is closed")

// hardware opens GPIO lines: the character device (cdev_linux.go), or a fake in tests.
type hardware interface {
	// available returns an error when there is no GPIO at all (no chips, not Linux).
	available() error
	// input requests a button line with edge detection. onEdge is called, from a goroutine
	// the line owns, with true when the line becomes active (pressed) and false when it
	// becomes inactive; Close waits for it to return. kernelDebounce reports whether the
	// kernel debounces the line (with o.debounce); if not, the caller has to.
	input(l lineSpec, o inputOptions, onEdge func(active bool)) (in inputLine, kernelDebounce bool, err error)
	// output requests an LED line, driven to on (lit) at once.
	output(l lineSpec, activeLow, on bool) (outputLine, error)
}

type inputOptions struct {
	activeLow bool
	bias      bias
	debounce  time.Duration
}

type inputLine interface {
	active() (bool, error) // the line's level now: true = active (pressed)
	Close() error
}

type outputLine interface {
	set(on bool) error
	Close() error
}

// role is what a button is for.
type role int

const (
	rolePrivacy role = iota
	roleCall
	roleReset
)

var roleNames = [...]string{"privacy", "call", "reset"}

// Controller reads the buttons and drives the LEDs. Create it with New, run Run on a
// goroutine of its own, and Close it when done; SetState may be called from any goroutine.
type Controller struct {
	log     *slog.Logger
	actions Actions

	// Set up by New, then owned by Run (and by Close once Run has returned).
	buttons []*buttonLine
	leds    []*ledLine
	shown   State // the look on the LEDs: a State or countdown
	shownAt time.Time

	edges chan edge     // from the lines' goroutines to Run
	wake  chan struct{} // SetState to Run; capacity 1
	done  chan struct{} // closed by Close

	mu      sync.Mutex
	state   State         // as last set
	running chan struct{} // closed when the Run in progress returns; nil when none
	closed  bool
}

type buttonLine struct {
	role role
	key  string // the Config field, for logs: "privacy_button"
	spec lineSpec
	in   inputLine
	*button
}

type ledLine struct {
	key    string
	colour colour
	out    outputLine
	lit    bool
	failed bool // a write failed; logged once
}

type edge struct {
	button int // index into Controller.buttons
	active bool
	at     time.Time
}

// New opens the lines named in cfg, sets the LEDs to StateBooting, and returns a Controller.
// Lines that cannot be used (no GPIO on this machine, a name not found, a line in use or not
// permitted) are logged in one line and left out; with none usable the Controller does
// nothing, and it is not an error. Errors are for a cfg that does not parse, and wrap
// ErrInvalidConfig. A nil actions does nothing; a nil log discards.
func New(cfg Config, actions Actions, log *slog.Logger) (*Controller, error) {
	return newController(cfg, actions, log, cdev{})
}

func newController(cfg Config, actions Actions, log *slog.Logger, hw hardware) (*Controller, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if actions == nil {
		actions = ActionFuncs{}
	}
	type want struct {
		key  string
		spec lineSpec
		role role   // buttons
		col  colour // LEDs
	}
	var buttons, leds []want
	var errs []error
	parse := func(key, s string, into *[]want, r role, c colour) {
		if s == "" {
			return
		}
		spec, err := parseLine(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("gpio: %s: %w", key, err))
			return
		}
		*into = append(*into, want{key: key, spec: spec, role: r, col: c})
	}
	parse("privacy_button", cfg.PrivacyButton, &buttons, rolePrivacy, 0)
	parse("call_button", cfg.CallButton, &buttons, roleCall, 0)
	parse("reset_button", cfg.ResetButton, &buttons, roleReset, 0)
	parse("led_green", cfg.LEDGreen, &leds, 0, green)
	parse("led_red", cfg.LEDRed, &leds, 0, red)
	b, err := parseBias(cfg.ButtonBias, cfg.ButtonActiveLow)
	if err != nil {
		errs = append(errs, fmt.Errorf("gpio: %w", err))
	}
	if cfg.Debounce < 0 || cfg.LongPress < 0 {
		errs = append(errs, fmt.Errorf("gpio: %w: debounce %s and long press %s must not be negative", ErrInvalidConfig, cfg.Debounce, cfg.LongPress))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	c := &Controller{
		log:     log,
		actions: actions,
		edges:   make(chan edge, 64),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		shown:   StateBooting,
		shownAt: time.Now(),
	}
	if len(buttons)+len(leds) == 0 {
		log.Debug("GPIO off: no buttons or LEDs configured")
		return c, nil
	}
	var configured []string
	for _, w := range append(buttons, leds...) {
		configured = append(configured, w.key+"="+w.spec.String())
	}
	if err := hw.available(); err != nil {
		log.Warn("GPIO unavailable: running without buttons and LEDs", "reason", err.Error(), "configured", strings.Join(configured, " "))
		return c, nil
	}

	var problems, opened []string
	for _, w := range leds {
		on, _ := looks[StateBooting].pattern(w.col).at(0)
		out, err := hw.output(w.spec, cfg.LEDActiveLow, on)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s=%s: %v", w.key, w.spec, err))
			continue
		}
		c.leds = append(c.leds, &ledLine{key: w.key, colour: w.col, out: out, lit: on})
		opened = append(opened, w.key+"="+w.spec.String())
	}
	if len(c.leds) == 1 { // one LED shows the states by pattern alone
		c.leds[0].colour = mono
		on, _ := looks[StateBooting].mono.at(0)
		c.light(c.leds[0], on)
	}
	// The reset gesture is on the reset button, else on the privacy button.
	resetOnPrivacy := cfg.ResetButton == ""
	inOpts := inputOptions{activeLow: cfg.ButtonActiveLow, bias: b, debounce: cfg.Debounce}
	var softDebounce []string
	for _, w := range buttons {
		i := len(c.buttons)
		in, kernelDebounce, err := hw.input(w.spec, inOpts, func(active bool) {
			select {
			case c.edges <- edge{button: i, active: active, at: time.Now()}:
			case <-c.done:
			}
		})
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s=%s: %v", w.key, w.spec, err))
			continue
		}
		held, err := in.active()
		if err != nil {
			held = false
		} else if held {
			log.Warn("GPIO button reads pressed already; it counts from its next press (if it is not held, check gpio.button_active_low)", "button", w.key)
		}
		var long time.Duration
		if w.role == roleReset || (w.role == rolePrivacy && resetOnPrivacy) {
			long = cfg.LongPress
		}
		debounce := cfg.Debounce
		if kernelDebounce {
			debounce = 0
		} else if debounce > 0 {
			softDebounce = append(softDebounce, w.key)
		}
		c.buttons = append(c.buttons, &buttonLine{role: w.role, key: w.key, spec: w.spec, in: in,
			button: newButton(debounce, long, held, time.Now())})
		opened = append(opened, w.key+"="+w.spec.String())
	}
	switch {
	case len(opened) == 0:
		log.Warn("GPIO unavailable: running without buttons and LEDs", "reason", strings.Join(problems, "; "))
	case len(problems) > 0:
		log.Warn("some GPIO lines unavailable: running without them", "reason", strings.Join(problems, "; "), "using", strings.Join(opened, " "))
	default:
		attrs := []any{"lines", strings.Join(opened, " ")}
		if softDebounce != nil {
			attrs = append(attrs, "software_debounce", strings.Join(softDebounce, " "))
		}
		log.Info("GPIO buttons and LEDs ready", attrs...)
	}
	return c, nil
}

// Active reports whether the Controller holds any GPIO line (false: it does nothing).
func (c *Controller) Active() bool { return len(c.buttons)+len(c.leds) > 0 }

// SetState sets what the LEDs show. It never blocks; it may be called from any goroutine,
// Actions included, before and while Run runs. Setting the state shown already keeps a
// blinking pattern in step; an unknown State is ignored.
func (c *Controller) SetState(s State) {
	if s < 0 || s >= numStates {
		c.log.Warn("GPIO: ignoring unknown LED state", "state", int(s))
		return
	}
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// State returns the state last set, by SetState or by a long press (StateResetting).
func (c *Controller) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Run reads the buttons, calls the Actions and drives the LED patterns until ctx is done or
// Close is called; then it returns nil, leaving the LEDs as they are until Close. Only one
// Run may be in progress at a time; after Close it returns ErrClosed.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.running != nil {
		c.mu.Unlock()
		return errors.New("gpio: Run is already in progress")
	}
	running := make(chan struct{})
	c.running = running
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = nil
		c.mu.Unlock()
		close(running)
	}()

	if !c.Active() {
		select {
		case <-ctx.Done():
		case <-c.done:
		}
		return nil
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Edges first, each at its own time: when Run falls behind, a press and its release
		// waiting together still make a press, and a glitch shorter than the debounce time
		// still makes nothing.
		select {
		case e := <-c.edges:
			c.edge(e)
			continue
		default:
		}
		now := time.Now()
		c.step(now)
		var tick <-chan time.Time
		if next := c.next(now); !next.IsZero() {
			timer.Reset(next.Sub(now))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
			return nil
		case e := <-c.edges:
			c.edge(e)
		case <-c.wake:
		case <-tick:
		}
	}
}

// edge brings the buttons up to the time of e, then applies it.
func (c *Controller) edge(e edge) {
	c.advance(e.at)
	c.buttons[e.button].input(e.active, e.at)
}

// advance brings the buttons up to time now, calling the actions.
func (c *Controller) advance(now time.Time) {
	for _, b := range c.buttons {
		for {
			ev, held := b.advance(now)
			if ev == evNone {
				break
			}
			c.handle(b, ev, held)
		}
	}
}

// step brings the buttons and LEDs up to time now.
func (c *Controller) step(now time.Time) {
	c.advance(now)
	show := c.State()
	for _, b := range c.buttons {
		if b.countingDown(now) {
			show = countdown
		}
	}
	if show != c.shown {
		c.shown, c.shownAt = show, now
	}
	for _, l := range c.leds {
		on, _ := looks[c.shown].pattern(l.colour).at(now.Sub(c.shownAt))
		c.light(l, on)
	}
}

// next returns when step next has something to do without a new event; zero if never.
func (c *Controller) next(now time.Time) time.Time {
	var t time.Time
	for _, b := range c.buttons {
		if n := b.next(now); !n.IsZero() && (t.IsZero() || n.Before(t)) {
			t = n
		}
	}
	for _, l := range c.leds {
		if _, n := looks[c.shown].pattern(l.colour).at(now.Sub(c.shownAt)); n >= 0 {
			if at := c.shownAt.Add(n); t.IsZero() || at.Before(t) {
				t = at
			}
		}
	}
	return t
}

func (c *Controller) handle(b *buttonLine, ev event, held time.Duration) {
	name := roleNames[b.role]
	switch ev {
	case evPress:
		c.log.Debug("GPIO button pressed", "button", name)
	case evShort:
		switch b.role {
		case rolePrivacy:
			c.log.Info("privacy button: toggling privacy mute", "held", held)
			c.actions.TogglePrivacy()
		case roleCall:
			c.log.Info("call button: joining or leaving the call", "held", held)
			c.actions.ToggleCall()
		default:
			c.log.Info("reset button: short press does nothing; hold it to factory reset", "held", held, "hold", b.long)
		}
	case evLong:
		c.log.Warn("factory reset: button held", "button", name, "held", held)
		c.SetState(StateResetting)
		c.actions.FactoryReset()
	case evRelease:
		switch {
		case b.fired, b.ignored:
			c.log.Debug("GPIO button released", "button", name, "held", held)
		case held >= b.warn:
			c.log.Info("factory reset cancelled: button released early", "button", name, "held", held, "hold", b.long)
		default:
			c.log.Info("button held too long for a short press and too short for a reset: nothing done", "button", name, "held", held, "short_under", ShortPressMax, "reset_at", b.long)
		}
	}
}

func (c *Controller) light(l *ledLine, on bool) {
	if l.lit == on {
		return
	}
	if err := l.out.set(on); err != nil {
		if !l.failed {
			l.failed = true
			c.log.Warn("GPIO LED write failed; not reporting further failures of this LED", "led", l.key, "err", err)
		}
		return
	}
	l.lit = on
}

// Close stops Run (waiting for it to return), turns the LEDs off and releases the lines.
// It may be called more than once, and without Run.
func (c *Controller) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	running := c.running
	c.mu.Unlock()
	if running != nil {
		<-running
	}
	var errs []error
	for _, l := range c.leds {
		if err := l.out.set(false); err != nil {
			errs = append(errs, fmt.Errorf("gpio: turning %s off: %w", l.key, err))
		}
		if err := l.out.Close(); err != nil {
			errs = append(errs, fmt.Errorf("gpio: releasing %s: %w", l.key, err))
		}
	}
	for _, b := range c.buttons {
		if err := b.in.Close(); err != nil {
			errs = append(errs, fmt.Errorf("gpio: releasing %s: %w", b.key, err))
		}
	}
	return errors.Join(errs...)
}
