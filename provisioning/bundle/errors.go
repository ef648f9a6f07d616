package bundle

import "errors"

// Errors returned by Parse and Verify. Each names why a bundle is refused; callers match them
// with errors.Is.
var (
	ErrMalformed    = errors.New("bundle is malformed")
	ErrUnsigned     = errors.New("bundle is not signed")
	ErrBadSignature = errors.New("bundle signature does not verify with the fleet key")
	ErrWrongDevice  = errors.New("bundle is for another device")
	ErrRollback     = errors.New("bundle version is older than the applied one")
	ErrNotNewer     = errors.New("bundle version is already applied")
)
