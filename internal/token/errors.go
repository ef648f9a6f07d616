package token

import "errors"

// Errors returned by Verify, Mint and Claims.Allows. They are wrapped with the detail
// (fmt.Errorf("...: %w")), so test them with errors.Is. ErrWrongRoom and ErrForbidden mean a
// valid token that does not cover the request (HTTP 403, room protocol code 403); every other
// error means the token itself is bad (HTTP 401, code 401).
var (
	// ErrMalformed: not three base64url parts of JSON of the right shape, or too long.
	ErrMalformed = errors.New("token: malformed")
	// ErrAlgorithm: a header alg other than HS256 (including "none"), or an unsupported header.
	ErrAlgorithm = errors.New("token: unsupported algorithm")
	// ErrSignature: the signature does not match the secret.
	ErrSignature = errors.New("token: bad signature")
	// ErrExpired: now is past exp (plus Leeway).
	ErrExpired = errors.New("token: expired")
	// ErrNotYetValid: nbf or iat is in the future (beyond Leeway).
	ErrNotYetValid = errors.New("token: not yet valid")
	// ErrLifetime: exp missing, or more than MaxLifetime after iat.
	ErrLifetime = errors.New("token: lifetime")
	// ErrInvalidClaims: a claim is missing, empty, too long, of the wrong type or not allowed.
	ErrInvalidClaims = errors.New("token: invalid claims")
	// ErrWeakSecret: a secret shorter than MinSecretLen bytes.
	ErrWeakSecret = errors.New("token: secret too short")
	// ErrWrongRoom: the token is for another room.
	ErrWrongRoom = errors.New("token: wrong room")
	// ErrForbidden: the token lacks a grant the request needs.
	ErrForbidden = errors.New("token: grant missing")
)
