package server

import "errors"

var (
	// ErrBadRequest is wrapped by every decoder error; the message says what is wrong and never
	// repeats a secret from the request.
	ErrBadRequest = errors.New("bad request")

	errNoTemplate = errors.New("the device's group has no configuration template")
)
