// Package gpio reads the appliance's buttons and drives its LEDs over the GPIO character device (v2 uAPI).
//
// Buttons: a short press (under ShortPressMax) of the privacy button toggles privacy mute and
// of the call button joins or leaves the call. Holding the reset button, or the privacy button
// when there is no reset button, for Config.LongPress starts a factory reset: the LEDs blink
// fast from 30% of that time (CountdownFrom) and go solid when FactoryReset is called;
// releasing earlier cancels it, and a press of ShortPressMax or longer on such a button then
// does nothing at all. A button without a long-press action acts on release whatever the
// length of the press. A button already held when the line is requested counts only from
// its next press.
//
// LEDs: a green and a red LED (or the halves of one red/green LED) show the State set by
// the daemon; with only one LED, patterns alone tell the states apart (see State).
//
// Lines are named in Config as a line name (searched on every /dev/gpiochip*) or as
// "gpiochipN:OFFSET". Missing GPIO hardware, a line not found, in use or not permitted is
// logged once and left out: the Controller then works without it, and with no line at all
// it does nothing. Debouncing is done by the kernel where it can, in this package otherwise.
//
// The button and LED logic is plain code driven by timestamped events (machine.go); the
// GPIO character device is behind a small interface (cdev_linux.go), so tests drive it with a
// fake and testing/synctest. Linux only: elsewhere every line is reported missing with an
// error wrapping errors.ErrUnsupported.
package gpio

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config maps the appliance's buttons and LEDs to GPIO lines. Its fields match
// internal/config's GPIO section, so gpio.Config(cfg.GPIO) converts one into the other.
//
// A line is "NAME" (a line name as gpioinfo lists it, searched on every /dev/gpiochip*) or
// "gpiochipN:OFFSET"; "" means there is no such button or LED.
type Config struct {
	PrivacyButton   string        // short press toggles privacy mute
	CallButton      string        // short press joins or leaves the call
	ResetButton     string        // long press starts a factory reset; "" = the privacy button's long press
	ButtonActiveLow bool          // a pressed button pulls its line low
	ButtonBias      string        // "auto" or "" (pull-up when active low, else pull-down), "pull-up", "pull-down", "disabled", "as-is"
	Debounce        time.Duration // a button's line must be steady this long for a change to count; 0 = none
	LongPress       time.Duration // hold this long to factory reset; 0 = buttons never reset
	LEDGreen        string
	LEDRed          string
	LEDActiveLow    bool // an LED lights while its line is low
}

// ShortPressMax is the longest press that counts as a short press on a button that also has
// a long-press action. Buttons without one act on release after a press of any length.
const ShortPressMax = time.Second

// CountdownFrom is how long a long press must have been held before the LEDs show the
// factory reset countdown: 30% of longPress, but not before ShortPressMax.
func CountdownFrom(longPress time.Duration) time.Duration {
	return max(longPress*3/10, ShortPressMax)
}

// Actions are what the buttons do. The Controller calls them from its Run goroutine, one at a
// time: they should return quickly (hand long work to another goroutine) and may call
// SetState.
type Actions interface {
	TogglePrivacy() // short press of the privacy button
	ToggleCall()    // short press of the call button
	FactoryReset()  // long press of the reset (or privacy) button; the LEDs show StateResetting
}

// ActionFuncs adapts functions to Actions; nil functions do nothing.
type ActionFuncs struct {
	OnTogglePrivacy, OnToggleCall, OnFactoryReset func()
}

// TogglePrivacy calls OnTogglePrivacy.
func (f ActionFuncs) TogglePrivacy() { call(f.OnTogglePrivacy) }

// ToggleCall calls OnToggleCall.
func (f ActionFuncs) ToggleCall() { call(f.OnToggleCall) }

// FactoryReset calls OnFactoryReset.
func (f ActionFuncs) FactoryReset() { call(f.OnFactoryReset) }

func call(f func()) {
	if f != nil {
		f()
	}
}

// State is what the LEDs show. The daemon sets it with SetState; the Controller itself sets
// StateResetting when a long press starts a factory reset, and overlays the countdown
// (both LEDs, or the only one, blinking fast at 4 Hz) while a long press is held.
//
//	state            green LED                  red LED          only one LED
//	StateBooting     blinks 1 Hz                off              blinks 1 Hz
//	StateReady       100 ms flash every 2 s     off              100 ms flash every 2 s
//	StateStreaming   on                         off              on
//	StateMuted       off                        on               two short flashes every 2 s
//	StateError       off                        blinks 1 Hz      blinks 2 Hz
//	StateResetting   on                         on               on
//
// Blinking starts with the LED on, when the state changes.
type State int

const (
	// StateBooting is the zero State: what the LEDs show until the daemon says otherwise.
	StateBooting State = iota
	// StateReady: up, nobody watching.
	StateReady
	// StateStreaming: at least one viewer receives video.
	StateStreaming
	// StateMuted: privacy mute is on; no video leaves the appliance.
	StateMuted
	// StateError: something needs attention (e.g. no camera).
	StateError
	// StateResetting: a factory reset is under way.
	StateResetting

	numStates
)

var stateNames = [...]string{"booting", "ready", "streaming", "muted", "error", "resetting"}

func (s State) String() string {
	if s >= 0 && s < numStates {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// ErrInvalidConfig is wrapped by New's errors: a line that is neither a name nor
// gpiochipN:OFFSET, an unknown bias, a negative duration.
var ErrInvalidConfig = errors.New("invalid GPIO config")

// errLineNotFound: no line of that name, or no such offset on the chip. New logs it.
var errLineNotFound = errors.New("line not found")

// lineSpec is a parsed line from Config: a name, or a chip and offset.
type lineSpec struct {
	name   string // when chip is ""
	chip   string // e.g. "gpiochip0"
	offset int
}

func (l lineSpec) String() string {
	if l.chip == "" {
		return l.name
	}
	return l.chip + ":" + strconv.Itoa(l.offset)
}

var chipOffsetRE = regexp.MustCompile(`^(gpiochip[0-9]+):([0-9]{1,5})$`)

// parseLine parses "NAME" or "gpiochipN:OFFSET".
func parseLine(s string) (lineSpec, error) {
	if m := chipOffsetRE.FindStringSubmatch(s); m != nil {
		off, _ := strconv.Atoi(m[2])
		return lineSpec{chip: m[1], offset: off}, nil
	}
	if strings.HasPrefix(s, "gpiochip") && strings.Contains(s, ":") {
		return lineSpec{}, fmt.Errorf("%w: %q is not chip:offset; write gpiochipN:OFFSET, e.g. gpiochip0:17", ErrInvalidConfig, s)
	}
	if s == "" || len(s) > 31 || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return lineSpec{}, fmt.Errorf("%w: %q is not a line name (1 to 31 printable characters) or gpiochipN:OFFSET", ErrInvalidConfig, s)
	}
	return lineSpec{name: s}, nil
}

// bias is the pull resistor requested for button lines.
type bias int

const (
	biasAsIs bias = iota
	biasPullUp
	biasPullDown
	biasDisabled
)

func parseBias(s string, activeLow bool) (bias, error) {
	switch s {
	case "", "auto":
		if activeLow {
			return biasPullUp, nil
		}
		return biasPullDown, nil
	case "pull-up":
		return biasPullUp, nil
	case "pull-down":
		return biasPullDown, nil
	case "disabled":
		return biasDisabled, nil
	case "as-is":
		return biasAsIs, nil
	}
	return 0, fmt.Errorf("%w: button bias %q: use auto, pull-up, pull-down, disabled or as-is", ErrInvalidConfig, s)
}
