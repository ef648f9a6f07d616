package gpio

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/warthog618/go-gpiocdev"
)

// consumer is the label the kernel shows (gpioinfo) for the lines edged holds.
const consumer = "edged"

// errNoChips says why there is no GPIO at all; New logs it.
var errNoChips = errors.New("no GPIO chips (/dev/gpiochip*): this machine has no GPIO controller, or its /dev is hidden from edged")

// cdev opens lines through the GPIO character device with go-gpiocdev.
type cdev struct{}

func (cdev) available() error {
	if len(gpiocdev.Chips()) == 0 {
		return errNoChips
	}
	return nil
}

// find opens the chip holding l and returns it with the line's offset.
func (cdev) find(l lineSpec) (*gpiocdev.Chip, int, error) {
	if l.chip != "" {
		c, err := gpiocdev.NewChip(l.chip, gpiocdev.WithConsumer(consumer))
		if err != nil {
			return nil, 0, chipError(l.chip, err)
		}
		if l.offset >= c.Lines() {
			c.Close()
			return nil, 0, fmt.Errorf("%w: %s has lines 0..%d", errLineNotFound, l.chip, c.Lines()-1)
		}
		return c, l.offset, nil
	}
	var searched []string
	format, args := "%w: no line named %q on %s (gpioinfo lists the names)", []any{errLineNotFound, l.name, ""}
	for _, name := range gpiocdev.Chips() {
		c, err := gpiocdev.NewChip(name, gpiocdev.WithConsumer(consumer))
		if err != nil { // the other chips may still have it; say why this one was not searched
			format, args = format+"; %w", append(args, chipError(name, err))
			continue
		}
		if off, err := c.FindLine(l.name); err == nil {
			return c, off, nil
		}
		c.Close()
		searched = append(searched, name)
	}
	args[2] = orNone(searched)
	return nil, 0, fmt.Errorf(format, args...)
}

func orNone(chips []string) string {
	if len(chips) == 0 {
		return "no chip"
	}
	return strings.Join(chips, ", ")
}

// chipError says why a chip did not open, keeping errors.Is(err, fs.ErrPermission) and
// fs.ErrNotExist working.
func chipError(chip string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("/dev/%s: %w (edged needs read-write access to it: run as root, or add the gpio group and a DeviceAllow to the unit)", chip, fs.ErrPermission)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("/dev/%s: %w", chip, fs.ErrNotExist)
	}
	return fmt.Errorf("/dev/%s: %w", chip, err)
}

// requestError says why a line request failed, naming the holder of a busy line.
func requestError(c *gpiocdev.Chip, offset int, err error) error {
	if errors.Is(err, syscall.EBUSY) {
		if info, ierr := c.LineInfo(offset); ierr == nil && info.Consumer != "" {
			return fmt.Errorf("%s:%d is in use by %q: %w", c.Name, offset, info.Consumer, err)
		}
		return fmt.Errorf("%s:%d is in use: %w", c.Name, offset, err)
	}
	return fmt.Errorf("requesting %s:%d: %w", c.Name, offset, err)
}

func (h cdev) input(l lineSpec, o inputOptions, onEdge func(active bool)) (inputLine, bool, error) {
	c, offset, err := h.find(l)
	if err != nil {
		return nil, false, err
	}
	defer c.Close() // a requested line outlives its chip's descriptor
	opts := []gpiocdev.LineReqOption{
		gpiocdev.WithConsumer(consumer),
		gpiocdev.AsInput,
		gpiocdev.WithBothEdges,
		gpiocdev.WithEventHandler(func(e gpiocdev.LineEvent) {
			onEdge(e.Type == gpiocdev.LineEventRisingEdge)
		}),
	}
	if o.activeLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	switch o.bias {
	case biasPullUp:
		opts = append(opts, gpiocdev.WithPullUp)
	case biasPullDown:
		opts = append(opts, gpiocdev.WithPullDown)
	case biasDisabled:
		opts = append(opts, gpiocdev.WithBiasDisabled)
	}
	if o.debounce > 0 {
		// Kernels from 5.10 debounce in the driver or in gpiolib; older ones (uAPI v1)
		// refuse, and the caller debounces instead.
		line, err := c.RequestLine(offset, append(opts, gpiocdev.WithDebounce(o.debounce))...)
		if err == nil {
			return cdevInput{line}, true, nil
		}
		if errors.Is(err, syscall.EBUSY) {
			return nil, false, requestError(c, offset, err)
		}
	}
	line, err := c.RequestLine(offset, opts...)
	if err != nil {
		return nil, false, requestError(c, offset, err)
	}
	return cdevInput{line}, false, nil
}

func (h cdev) output(l lineSpec, activeLow, on bool) (outputLine, error) {
	c, offset, err := h.find(l)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	opts := []gpiocdev.LineReqOption{gpiocdev.WithConsumer(consumer), gpiocdev.AsOutput(value(on))}
	if activeLow {
		opts = append(opts, gpiocdev.AsActiveLow)
	}
	line, err := c.RequestLine(offset, opts...)
	if err != nil {
		return nil, requestError(c, offset, err)
	}
	return cdevOutput{line}, nil
}

func value(on bool) int {
	if on {
		return 1
	}
	return 0
}

type cdevInput struct{ line *gpiocdev.Line }

func (i cdevInput) active() (bool, error) {
	v, err := i.line.Value()
	return v == 1, err
}

func (i cdevInput) Close() error { return i.line.Close() }

type cdevOutput struct{ line *gpiocdev.Line }

func (o cdevOutput) set(on bool) error { return o.line.SetValue(value(on)) }

func (o cdevOutput) Close() error { return o.line.Close() }
