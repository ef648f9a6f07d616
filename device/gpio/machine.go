package gpio

import "time"

// This file is the logic of buttons and LEDs as plain code: a button is fed timestamped
// edges and asked what happened by a given time; a pattern says whether an LED is on at a
// given time. Nothing here reads a clock, starts a goroutine or touches hardware.

// event is what a button did.
type event int

const (
	evNone    event = iota
	evPress         // the press was accepted (debounced); no action yet
	evShort         // released: the short-press action
	evLong          // held for the long press: the long-press action
	evRelease       // released without an action (see button.advance)
)

// button turns the raw edges of one line into presses and gestures.
type button struct {
	debounce time.Duration // software debounce; 0 when the kernel debounces, or none wanted
	long     time.Duration // hold this long for evLong; 0: no long-press action
	warn     time.Duration // the countdown shows from this long into a press (when long > 0)

	raw     bool      // the line's level as last reported: true = active (pressed)
	rawAt   time.Time // when raw last changed
	pressed bool      // the debounced level
	downAt  time.Time // when the current (or last) press began
	fired   bool      // evLong was reported for the current press
	ignored bool      // the current press began before the button was watched: it does nothing
}

// newButton returns a button whose line reads active (held) or not at time now. A button
// held already counts only from its next press.
func newButton(debounce, long time.Duration, held bool, now time.Time) *button {
	b := &button{debounce: debounce, long: long, raw: held, rawAt: now, pressed: held, downAt: now, ignored: held}
	if long > 0 {
		b.warn = CountdownFrom(long)
	}
	return b
}

// input records an edge: the line became active (pressed) or inactive at time at. Repeated
// levels (a lost edge, a bounce the kernel merged) are harmless.
func (b *button) input(active bool, at time.Time) {
	if active != b.raw {
		b.raw, b.rawAt = active, at
	}
}

// advance reports what happened by time now, one event per call: call it until it returns
// evNone. held is how long the press lasted, for evShort, evLong and evRelease.
//
// A release is evShort when the press lasted under ShortPressMax, or at any length when the
// button has no long-press action; otherwise (a long press let go early, or one that has
// already fired, or a press that began before the button was watched) it is evRelease.
func (b *button) advance(now time.Time) (ev event, held time.Duration) {
	if b.armed() && b.heldUntil(now).Sub(b.downAt) >= b.long {
		b.fired = true
		return evLong, b.long
	}
	if b.raw != b.pressed && !now.Before(b.rawAt.Add(b.debounce)) {
		b.pressed = b.raw
		if b.pressed {
			b.downAt, b.fired, b.ignored = b.rawAt, false, false
			return evPress, 0
		}
		held = b.rawAt.Sub(b.downAt)
		if !b.fired && !b.ignored && (b.long == 0 || held < ShortPressMax) {
			return evShort, held
		}
		return evRelease, held
	}
	return evNone, 0
}

// armed reports whether the current press can still become a long press.
func (b *button) armed() bool {
	return b.pressed && b.long > 0 && !b.fired && !b.ignored
}

// heldUntil is now, or when the line was let go if that release is still being debounced.
func (b *button) heldUntil(now time.Time) time.Time {
	if !b.raw {
		return b.rawAt
	}
	return now
}

// countingDown reports whether the LEDs should show the factory reset countdown at now.
func (b *button) countingDown(now time.Time) bool {
	return b.armed() && b.heldUntil(now).Sub(b.downAt) >= b.warn
}

// next returns the earliest time after which advance or countingDown may answer differently
// without a new edge, or the zero Time if none.
func (b *button) next(now time.Time) time.Time {
	var t time.Time
	earliest := func(c time.Time) {
		if t.IsZero() || c.Before(t) {
			t = c
		}
	}
	if b.raw != b.pressed {
		earliest(b.rawAt.Add(b.debounce))
	}
	if b.armed() && b.raw {
		if w := b.downAt.Add(b.warn); w.After(now) {
			earliest(w)
		}
		earliest(b.downAt.Add(b.long))
	}
	return t
}

// pattern is how one LED behaves over time.
type pattern struct {
	steps []time.Duration // on, off, on, off, … repeating; empty: steady at on
	on    bool
}

var (
	steadyOff  = pattern{}
	steadyOn   = pattern{on: true}
	slowBlink  = blink(500*time.Millisecond, 500*time.Millisecond) // 1 Hz
	heartbeat  = blink(100*time.Millisecond, 1900*time.Millisecond)
	errorBlink = blink(250*time.Millisecond, 250*time.Millisecond) // 2 Hz
	fastBlink  = blink(125*time.Millisecond, 125*time.Millisecond) // 4 Hz
	doubleBlip = blink(100*time.Millisecond, 150*time.Millisecond, 100*time.Millisecond, 1650*time.Millisecond)
)

// blink returns a repeating pattern of on, off, on, off… durations (an even number).
func blink(steps ...time.Duration) pattern { return pattern{steps: steps} }

// at returns whether the LED is on at d into the pattern, and when (counted like d) it
// next changes; next is negative for a steady pattern.
func (p pattern) at(d time.Duration) (on bool, next time.Duration) {
	if len(p.steps) == 0 {
		return p.on, -1
	}
	d = max(d, 0)
	var period time.Duration
	for _, s := range p.steps {
		period += s
	}
	start := d - d%period
	for i, s := range p.steps {
		if start+s > d {
			return i%2 == 0, start + s
		}
		start += s
	}
	panic("unreachable")
}

// look is what the LEDs show for one State (or the countdown).
type look struct {
	green, red pattern // with both LEDs
	mono       pattern // with only one LED, whatever its colour
}

// countdown is the look key of the factory reset countdown, shown over any State.
const countdown = numStates

// looks is indexed by State, and countdown. Keep it in step with the table on State.
var looks = [...]look{
	StateBooting:   {green: slowBlink, red: steadyOff, mono: slowBlink},
	StateReady:     {green: heartbeat, red: steadyOff, mono: heartbeat},
	StateStreaming: {green: steadyOn, red: steadyOff, mono: steadyOn},
	StateMuted:     {green: steadyOff, red: steadyOn, mono: doubleBlip},
	StateError:     {green: steadyOff, red: slowBlink, mono: errorBlink},
	StateResetting: {green: steadyOn, red: steadyOn, mono: steadyOn},
	countdown:      {green: fastBlink, red: fastBlink, mono: fastBlink},
}

// colour says which pattern of a look an LED follows.
type colour int

const (
	green colour = iota
	red
	mono
)

func (l look) pattern(c colour) pattern {
	switch c {
	case green:
		return l.green
	case red:
		return l.red
	}
	return l.mono
}
