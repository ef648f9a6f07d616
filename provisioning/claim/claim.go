// Package claim is the claim a flasher writes to a device's boot partition (provisioning
// server, the fingerprint of its CA, a claim token) and the claim tokens themselves: how they
// look, how they are made, and the hash under which a server stores them.
package claim

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// ErrInvalid is wrapped by every error of Parse and CheckToken.
var ErrInvalid = errors.New("invalid claim")

// MaxSize bounds a claim file.
const MaxSize = 16 << 10

// TokenPrefix starts every claim token, so a leaked one is recognisable (secret scanners).
const TokenPrefix = "ect_"

// Claim is the content of the claim file (JSON):
//
//	{"server":"https://prov.example.com:8443","ca_sha256":"<64 hex>","token":"ect_…"}
//
// ca_sha256 pins the provisioning server's CA certificate (SHA-256 of its DER); fleet_key, when
// present, pins the fleet's Ed25519 bundle key (base64) instead of taking it from enrolment.
type Claim struct {
	Server   string `json:"server"`
	CASHA256 string `json:"ca_sha256"`
	Token    string `json:"token,omitempty"`
	FleetKey string `json:"fleet_key,omitempty"`
}

// String never shows the token.
func (c Claim) String() string {
	return fmt.Sprintf("claim{server=%s ca_sha256=%s token=%t}", c.Server, c.CASHA256, c.Token != "")
}

// Parse decodes a claim strictly: unknown fields, trailing data, a server that is not an https
// URL, a fingerprint that is not 64 hex digits or a malformed token are errors. A claim without
// a token is valid (the token is removed after enrolment).
func Parse(data []byte) (Claim, error) {
	var c Claim
	if len(data) > MaxSize {
		return c, fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalid, len(data), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Claim{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Claim{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	if err := c.Validate(); err != nil {
		return Claim{}, err
	}
	return c, nil
}

// Validate checks each field, naming the one at fault.
func (c Claim) Validate() error {
	u, err := url.Parse(c.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: server %q is not an https://host[:port] URL", ErrInvalid, c.Server)
	}
	if len(c.CASHA256) != 64 || strings.ToLower(c.CASHA256) != c.CASHA256 {
		return fmt.Errorf("%w: ca_sha256 must be 64 lowercase hex digits", ErrInvalid)
	}
	if _, err := hex.DecodeString(c.CASHA256); err != nil {
		return fmt.Errorf("%w: ca_sha256 must be 64 lowercase hex digits", ErrInvalid)
	}
	if c.Token != "" {
		if err := CheckToken(c.Token); err != nil {
			return err
		}
	}
	if c.FleetKey != "" {
		k, err := base64.StdEncoding.Strict().DecodeString(c.FleetKey)
		if err != nil || len(k) != 32 {
			return fmt.Errorf("%w: fleet_key must be a base64 Ed25519 public key", ErrInvalid)
		}
	}
	return nil
}

// Encode returns the claim file for c.
func (c Claim) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// NewToken returns a fresh claim token: TokenPrefix and 32 random bytes in unpadded base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("claim token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckToken reports whether s has the shape of a claim token (without saying anything about
// it in the error: the error may be logged).
func CheckToken(s string) error {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return fmt.Errorf("%w: token does not start with %q", ErrInvalid, TokenPrefix)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("%w: token is not %s and 43 base64url characters", ErrInvalid, TokenPrefix)
	}
	return nil
}

// HashToken is what a server stores instead of the token: hex SHA-256. The tokens carry 256
// random bits, so a plain hash is enough (no password stretching needed).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
