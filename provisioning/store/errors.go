package store

import "errors"

// Errors of the fleet registry; the server maps each to an HTTP status and a clear message.
var (
	ErrNotFound      = errors.New("not found")
	ErrClaimUnknown  = errors.New("claim token is not known")
	ErrClaimUsed     = errors.New("claim token has already been used up")
	ErrClaimExpired  = errors.New("claim token has expired")
	ErrConflict      = errors.New("changed concurrently")
	ErrDeviceRevoked = errors.New("device is revoked")
)
