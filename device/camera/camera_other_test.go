//go:build !linux

package camera

import (
	"context"
	"errors"
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

func TestStubUnsupported(t *testing.T) {
	if _, err := Open(Config{Device: "/dev/video0"}, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Open: got %v, want errors.ErrUnsupported", err)
	}
	var c *Camera
	if err := c.Run(context.Background(), func(*media.Frame) {}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Run: got %v, want errors.ErrUnsupported", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := Discover(); len(got) != 0 {
		t.Errorf("Discover: got %v, want none", got)
	}
}
