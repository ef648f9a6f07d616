package turn

import "errors"

var (
	// ErrConfig is wrapped by New's configuration errors, which name the field and the fix.
	ErrConfig = errors.New("turn: bad configuration")
	// ErrQuota is returned when an identity already holds its maximum number of allocations.
	ErrQuota = errors.New("turn: allocation quota reached")
)
