//go:build !linux

package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/edgeflux/edge/internal/media"
)

// Camera is an open capture device. V4L2 exists only on Linux: here nothing opens.
type Camera struct {
	device string
}

// Open returns an error wrapping errors.ErrUnsupported: V4L2 capture needs Linux.
func Open(cfg Config, log *slog.Logger) (*Camera, error) {
	return nil, fmt.Errorf("camera: open %s: V4L2 capture needs Linux: %w", cfg.Device, errors.ErrUnsupported)
}

// Mode is what was negotiated: nothing, here.
func (c *Camera) Mode() Mode { return Mode{} }

// Stats counts nothing, here.
func (c *Camera) Stats() Stats { return Stats{} }

// Run returns an error wrapping errors.ErrUnsupported.
func (c *Camera) Run(ctx context.Context, emit func(*media.Frame)) error {
	return fmt.Errorf("camera: run: V4L2 capture needs Linux: %w", errors.ErrUnsupported)
}

// Close does nothing.
func (c *Camera) Close() error { return nil }

// Discover finds nothing: there are no V4L2 devices.
func Discover() []string { return nil }
