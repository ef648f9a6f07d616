//go:build !cgo

// Package openh264 is the software H.264 encoder; this build has no cgo, so it is absent.
package openh264

import (
	"errors"
	"fmt"

	"github.com/edgeflux/edge/encoder"
)

// Name is the backend's name in logs and the status page.
const Name = "openh264 (software)"

// New reports that the software encoder needs a cgo build.
func New(encoder.Config) (encoder.Encoder, error) {
	return nil, fmt.Errorf("openh264 software encoder needs a cgo build (CGO_ENABLED=1 and gcc): %w", errors.ErrUnsupported)
}
