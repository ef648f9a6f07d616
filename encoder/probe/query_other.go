//go:build !linux

package probe

import (
	"errors"
	"fmt"
)

// Discover needs Linux's V4L2.
func Discover() ([]Device, error) {
	return nil, fmt.Errorf("probe: V4L2 devices exist only on Linux: %w", errors.ErrUnsupported)
}

// Query needs Linux's V4L2.
func Query(path string) (Device, error) {
	return Device{}, fmt.Errorf("probe %s: V4L2 devices exist only on Linux: %w", path, errors.ErrUnsupported)
}
