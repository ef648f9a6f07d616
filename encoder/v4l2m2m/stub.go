//go:build !linux || !cgo

package v4l2m2m

import (
	"errors"
	"fmt"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/internal/media"
)

// errNoBackend is what every entry point returns in this build.
func errNoBackend() error {
	return fmt.Errorf("v4l2m2m hardware encoder needs Linux and a cgo build (CGO_ENABLED=1 and gcc): %w", errors.ErrUnsupported)
}

// Encoder is absent from this build: the backend needs Linux and cgo. Its methods exist so
// that callers compile everywhere; New never returns one.
type Encoder struct{}

// New reports that the hardware encoder backend needs a Linux cgo build.
func New(encoder.Config, Options) (*Encoder, error) { return nil, errNoBackend() }

// The methods of the Linux cgo build; each reports the backend missing.

func (e *Encoder) Encode(*media.Frame) (media.AccessUnit, error) {
	return media.AccessUnit{}, errNoBackend()
}
func (e *Encoder) Submit(*media.Frame) error                    { return errNoBackend() }
func (e *Encoder) Drain() ([]media.AccessUnit, error)           { return nil, errNoBackend() }
func (e *Encoder) Reset() error                                 { return errNoBackend() }
func (e *Encoder) RequestKeyframe()                             {}
func (e *Encoder) SetBitrate(int) error                         { return errNoBackend() }
func (e *Encoder) SetQP(int, int) error                         { return errNoBackend() }
func (e *Encoder) Name() string                                 { return "v4l2m2m (unavailable)" }
func (e *Encoder) Close() error                                 { return nil }
func (e *Encoder) Stats() Stats                                 { return Stats{} }
func (e *Encoder) Controls() []ControlStatus                    { return nil }
func (e *Encoder) OutputFormat() (FourCC, int, int, bool, bool) { return 0, 0, 0, false, false }

var _ encoder.Encoder = (*Encoder)(nil)

// Scaler is absent from this build: the backend needs Linux and cgo.
type Scaler struct{}

// NewScaler reports that the hardware scaler needs a Linux cgo build.
func NewScaler(ScalerOptions) (*Scaler, error) { return nil, errNoBackend() }

func (s *Scaler) Scale(*media.Frame, int, int) (*media.Frame, error) { return nil, errNoBackend() }
func (s *Scaler) Submit(*media.Frame, int, int) error                { return errNoBackend() }
func (s *Scaler) Wait() (*media.Frame, error)                        { return nil, errNoBackend() }
func (s *Scaler) Name() string                                       { return "v4l2m2m scaler (unavailable)" }
func (s *Scaler) Close() error                                       { return nil }
func (s *Scaler) Stats() ScalerStats                                 { return ScalerStats{} }
