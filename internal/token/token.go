// Package token mints and verifies the edge's access tokens: JWTs signed with HS256 that
// name a participant, a room and what it may do (docs/room-protocol.md, "Tokens").
package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// MaxTokenLen bounds the token text Verify accepts; longer input is ErrMalformed
	// before any decoding.
	MaxTokenLen = 8 << 10
	// MaxLifetime is the longest exp - iat a token may have.
	MaxLifetime = 24 * time.Hour
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway = 30 * time.Second
	// MinSecretLen is the shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least
	// the hash size).
	MinSecretLen = 32
	// AnyRoom as a token's room makes it valid in every room; only admin tokens may use it.
	AnyRoom = "*"

	maxIdentityLen = 128
	maxRoomLen     = 128
	maxNameLen     = 256
	// maxNumericDate is 9999-12-31T23:59:59Z.
	maxNumericDate = 253402300799
)

// Grant is a set of permissions; combine with |.
type Grant uint8

const (
	GrantPublish Grant = 1 << iota
	GrantSubscribe
	GrantAdmin
)

// String lists the grants as "publish|subscribe|admin".
func (g Grant) String() string {
	var parts []string
	for _, n := range []struct {
		g    Grant
		name string
	}{{GrantPublish, "publish"}, {GrantSubscribe, "subscribe"}, {GrantAdmin, "admin"}} {
		if g&n.g != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// Grants is the token's "grants" claim.
type Grants struct {
	Publish   bool `json:"publish"`
	Subscribe bool `json:"subscribe"`
	Admin     bool `json:"admin"`
}

// Mask returns the grants as a Grant set.
func (g Grants) Mask() Grant {
	var m Grant
	if g.Publish {
		m |= GrantPublish
	}
	if g.Subscribe {
		m |= GrantSubscribe
	}
	if g.Admin {
		m |= GrantAdmin
	}
	return m
}

// Claims is what a token says. Zero times are absent claims.
type Claims struct {
	Identity  string    // "sub": the participant, unique in the room
	Name      string    // "name": display name, optional
	Room      string    // "room": the room, or AnyRoom for admin tokens
	Grants    Grants    // "grants"
	IssuedAt  time.Time // "iat"
	NotBefore time.Time // "nbf"
	ExpiresAt time.Time // "exp": required
}

// Allows returns nil when the token covers room and every grant in need, else an error
// wrapping ErrWrongRoom or ErrForbidden. room must name a room; for endpoints outside any
// room (/api/*, /metrics) use Has.
func (c Claims) Allows(room string, need Grant) error {
	if room == "" {
		return fmt.Errorf("%w: no room given to check the token against", ErrWrongRoom)
	}
	if c.Room != room && c.Room != AnyRoom {
		return fmt.Errorf("%w: token is for room %q, not %q", ErrWrongRoom, c.Room, room)
	}
	return c.Has(need)
}

// Has returns nil when the token carries every grant in need, else an error wrapping
// ErrForbidden.
func (c Claims) Has(need Grant) error {
	if missing := need &^ c.Grants.Mask(); missing != 0 {
		return fmt.Errorf("%w: needs %s", ErrForbidden, missing)
	}
	return nil
}

// header is the only JOSE header Mint writes.
const header = `{"alg":"HS256","typ":"JWT"}`

var b64 = base64.RawURLEncoding.Strict()

// Mint signs c with secret. IssuedAt defaults to now and NotBefore to IssuedAt; ExpiresAt is
// required and at most MaxLifetime after IssuedAt.
func Mint(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("%w: %d bytes, need at least %d", ErrWeakSecret, len(secret), MinSecretLen)
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	if err := c.validate(); err != nil {
		return "", err
	}
	if err := c.checkLifetime(c.IssuedAt); err != nil {
		return "", err
	}
	if c.NotBefore.After(c.ExpiresAt) {
		return "", fmt.Errorf("%w: nbf is after exp", ErrLifetime)
	}
	payload, err := json.Marshal(struct {
		Sub    string `json:"sub"`
		Name   string `json:"name,omitempty"`
		Room   string `json:"room"`
		Grants Grants `json:"grants"`
		Iat    int64  `json:"iat"`
		Nbf    int64  `json:"nbf"`
		Exp    int64  `json:"exp"`
	}{c.Identity, c.Name, c.Room, c.Grants, c.IssuedAt.Unix(), c.NotBefore.Unix(), c.ExpiresAt.Unix()})
	if err != nil {
		return "", fmt.Errorf("token: encode claims: %w", err)
	}
	signed := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(payload)
	return signed + "." + b64.EncodeToString(sign(secret, signed)), nil
}

func sign(secret []byte, signed string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed))
	return mac.Sum(nil)
}

// Verify checks token's form, algorithm, signature and times against now and returns its
// claims. The signature is checked (in constant time) before the claims are parsed.
func Verify(secret []byte, token string, now time.Time) (Claims, error) {
	if len(secret) < MinSecretLen {
		return Claims{}, fmt.Errorf("%w: %d bytes, need at least %d", ErrWeakSecret, len(secret), MinSecretLen)
	}
	if len(token) > MaxTokenLen {
		return Claims{}, fmt.Errorf("%w: %d bytes, longer than %d", ErrMalformed, len(token), MaxTokenLen)
	}
	// base64's decoders skip CR and LF even in strict mode; allow only the alphabet.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return Claims{}, fmt.Errorf("%w: byte %#02x at %d is not base64url (no padding) or '.'", ErrMalformed, c, i)
		}
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return Claims{}, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	hdr, err := decodePart("header", h)
	if err != nil {
		return Claims{}, err
	}
	if err := checkHeader(hdr); err != nil {
		return Claims{}, err
	}
	sig, err := decodePart("signature", s)
	if err != nil {
		return Claims{}, err
	}
	if !hmac.Equal(sig, sign(secret, token[:len(h)+1+len(p)])) {
		return Claims{}, ErrSignature
	}
	payload, err := decodePart("payload", p)
	if err != nil {
		return Claims{}, err
	}
	c, err := parseClaims(payload)
	if err != nil {
		return Claims{}, err
	}
	if err := c.validate(); err != nil {
		return Claims{}, err
	}
	if err := c.checkTimes(now); err != nil {
		return Claims{}, err
	}
	return c, nil
}

func decodePart(what, s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: empty %s", ErrMalformed, what)
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return b, nil
}

// checkHeader accepts {"alg":"HS256"} with optional "typ":"JWT" and "kid"; anything else,
// notably "crit", is refused.
func checkHeader(b []byte) error {
	fields, err := object("header", b)
	if err != nil {
		return err
	}
	algRaw, ok := fields["alg"]
	if !ok {
		return fmt.Errorf("%w: header has no alg", ErrAlgorithm)
	}
	alg, err := str("header alg", algRaw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAlgorithm, err)
	}
	if alg != "HS256" {
		return fmt.Errorf("%w: alg %q, only HS256 is accepted", ErrAlgorithm, clip(alg))
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		v := fields[k]
		switch k {
		case "alg":
		case "typ":
			typ, err := str("header typ", v)
			if err != nil {
				return err
			}
			if !strings.EqualFold(typ, "JWT") {
				return fmt.Errorf("%w: header typ %q, want JWT", ErrMalformed, clip(typ))
			}
		case "kid":
			if _, err := str("header kid", v); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: header parameter %q is not supported", ErrAlgorithm, clip(k))
		}
	}
	return nil
}

// parseClaims decodes the payload strictly: known claims must have their types, the other
// registered claims iss, aud and jti are tolerated (and ignored), any other claim is an error.
func parseClaims(b []byte) (Claims, error) {
	fields, err := object("payload", b)
	if err != nil {
		return Claims{}, err
	}
	var c Claims
	for _, k := range slices.Sorted(maps.Keys(fields)) { // the same token, the same error
		v := fields[k]
		var err error
		switch k {
		case "sub":
			c.Identity, err = str("sub", v)
		case "name":
			c.Name, err = str("name", v)
		case "room":
			c.Room, err = str("room", v)
		case "grants":
			err = grants(v, &c.Grants)
		case "iat":
			c.IssuedAt, err = numericDate("iat", v)
		case "nbf":
			c.NotBefore, err = numericDate("nbf", v)
		case "exp":
			c.ExpiresAt, err = numericDate("exp", v)
		case "iss", "jti":
			_, err = str(k, v)
		case "aud":
			if _, e := str(k, v); e != nil {
				var auds []string
				if json.Unmarshal(v, &auds) != nil {
					err = fmt.Errorf("%w: aud is neither a string nor an array of strings", ErrInvalidClaims)
				}
			}
		default:
			err = fmt.Errorf("%w: unknown claim %q", ErrInvalidClaims, clip(k))
		}
		if err != nil {
			return Claims{}, err
		}
	}
	return c, nil
}

func grants(v json.RawMessage, g *Grants) error {
	fields, err := object("grants", v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidClaims, err)
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		v := fields[k]
		var dst *bool
		switch k {
		case "publish":
			dst = &g.Publish
		case "subscribe":
			dst = &g.Subscribe
		case "admin":
			dst = &g.Admin
		default:
			return fmt.Errorf("%w: unknown grant %q", ErrInvalidClaims, clip(k))
		}
		switch string(v) {
		case "true":
			*dst = true
		case "false":
			*dst = false
		default:
			return fmt.Errorf("%w: grant %s is not a boolean", ErrInvalidClaims, k)
		}
	}
	return nil
}

// object decodes one JSON object into its members, refusing invalid UTF-8, duplicate keys
// (which parsers resolve differently) and trailing data.
func object(what string, b []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, what)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("%w: %s is not a JSON object", ErrMalformed, what)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	if err := noDuplicateKeys(b); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return fields, nil
}

// noDuplicateKeys walks an already valid JSON object's top level.
func noDuplicateKeys(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if _, err := d.Token(); err != nil { // {
		return err
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		if seen[k] {
			return fmt.Errorf("duplicate key %q", clip(k))
		}
		seen[k] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

func str(what string, v json.RawMessage) (string, error) {
	if len(v) == 0 || v[0] != '"' {
		return "", fmt.Errorf("%w: %s is not a string", ErrInvalidClaims, what)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrInvalidClaims, what, err)
	}
	return s, nil
}

// numericDate parses RFC 7519 NumericDate: seconds since the epoch, possibly fractional
// (truncated), between 0 and year 9999.
func numericDate(what string, v json.RawMessage) (time.Time, error) {
	s := string(v)
	if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return time.Time{}, fmt.Errorf("%w: %s is not a number", ErrInvalidClaims, what)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
			return time.Time{}, fmt.Errorf("%w: %s %s is not a date in seconds", ErrInvalidClaims, what, clip(s))
		}
		n = int64(f)
	}
	if n < 0 || n > maxNumericDate {
		return time.Time{}, fmt.Errorf("%w: %s %d is out of range", ErrInvalidClaims, what, n)
	}
	return time.Unix(n, 0), nil
}

// validate checks the claims that do not depend on the time.
func (c Claims) validate() error {
	if err := text("sub", c.Identity, maxIdentityLen, true); err != nil {
		return err
	}
	if err := text("room", c.Room, maxRoomLen, true); err != nil {
		return err
	}
	if err := text("name", c.Name, maxNameLen, false); err != nil {
		return err
	}
	if c.Room == AnyRoom && !c.Grants.Admin {
		return fmt.Errorf("%w: room %q is only allowed with the admin grant", ErrInvalidClaims, AnyRoom)
	}
	if c.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: exp is required", ErrLifetime)
	}
	return nil
}

func text(what, s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%w: %s is required", ErrInvalidClaims, what)
	case len(s) > max:
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrInvalidClaims, what, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidClaims, what)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %s contains control characters", ErrInvalidClaims, what)
	}
	return nil
}

// checkLifetime: exp after start and at most MaxLifetime later.
func (c Claims) checkLifetime(start time.Time) error {
	if !c.ExpiresAt.After(start) {
		return fmt.Errorf("%w: exp %s is not after iat %s", ErrLifetime, c.ExpiresAt.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339))
	}
	if d := c.ExpiresAt.Sub(start); d > MaxLifetime {
		return fmt.Errorf("%w: valid for %s, at most %s", ErrLifetime, d, MaxLifetime)
	}
	return nil
}

func (c Claims) checkTimes(now time.Time) error {
	if !now.Before(c.ExpiresAt.Add(Leeway)) {
		return fmt.Errorf("%w: at %s (now %s)", ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if c.NotBefore.After(c.ExpiresAt) {
		return fmt.Errorf("%w: nbf is after exp", ErrLifetime)
	}
	if !c.NotBefore.IsZero() && now.Add(Leeway).Before(c.NotBefore) {
		return fmt.Errorf("%w: nbf %s (now %s)", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !c.IssuedAt.IsZero() {
		if now.Add(Leeway).Before(c.IssuedAt) {
			return fmt.Errorf("%w: issued in the future, iat %s (now %s)", ErrNotYetValid, c.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		return c.checkLifetime(c.IssuedAt)
	}
	// Without iat, the token may not outlive MaxLifetime from now.
	if c.ExpiresAt.Sub(now) > MaxLifetime+Leeway {
		return fmt.Errorf("%w: no iat and exp is more than %s away", ErrLifetime, MaxLifetime)
	}
	return nil
}

// clip shortens attacker-supplied text quoted in an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
