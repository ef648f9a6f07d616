package h264

import "errors"

// Sentinel errors; the errors returned by this package wrap one of them with the detail.
var (
	// ErrTruncated means the input ended before a field that must be there.
	ErrTruncated = errors.New("h264: truncated")
	// ErrInvalid means a field holds a value the standard does not allow or this package does not
	// support.
	ErrInvalid = errors.New("h264: invalid")
)
