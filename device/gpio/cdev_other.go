//go:build !linux

package gpio

import (
	"errors"
	"fmt"
)

// cdev stands in for the GPIO character device, which only Linux has: every line is missing.
type cdev struct{}

var errNotLinux = fmt.Errorf("the GPIO character device needs Linux: %w", errors.ErrUnsupported)

func (cdev) available() error { return errNotLinux }

func (cdev) input(lineSpec, inputOptions, func(bool)) (inputLine, bool, error) {
	return nil, false, errNotLinux
}

func (cdev) output(lineSpec, bool, bool) (outputLine, error) { return nil, errNotLinux }
