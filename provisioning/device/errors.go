package device

import "errors"

// Errors of the device side.
var (
	ErrNoClaim    = errors.New("no claim file")
	ErrNotReady   = errors.New("edged did not become ready with the new configuration")
	ErrRejected   = errors.New("configuration refused")
	ErrRevoked    = errors.New("the server refuses this device's certificate (revoked)")
	ErrNotEnroled = errors.New("device is not enrolled")
)
