package edge

import "errors"

// Errors a WHEP client can get, each mapped to an HTTP status by the handler.
var (
	ErrUnauthorized = errors.New("missing or wrong access token")
	ErrNoStream     = errors.New("no such stream")
	ErrStreamDown   = errors.New("stream is down")
	ErrBadOffer     = errors.New("bad SDP offer")
	ErrTooManyViews = errors.New("viewer limit reached")
	ErrNoSession    = errors.New("no such session")
)
