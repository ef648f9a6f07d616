// Package bundle is the signed configuration bundle: the format, Ed25519 signing and the strict
// parser and verifier a device runs before it applies anything.
//
// A bundle is one JSON object:
//
//	{"format":"edge-bundle/1","key_id":"<hex>","payload":"<base64>","signature":"<base64>"}
//
// payload is the base64 of a JSON Payload (device, version, issued_at, config); signature is
// Ed25519 over "edge-bundle/1\n" followed by the decoded payload bytes, so a signature can never
// be replayed as something else. key_id is the first 8 bytes of SHA-256 of the public key, in
// hex: it must name the fleet key, but only the signature proves anything.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Format is the only bundle format this package reads and writes.
const Format = "edge-bundle/1"

// MaxSize bounds a bundle on the wire; larger input is refused before parsing.
const MaxSize = 1 << 20

// Payload is what a bundle carries, covered by the signature.
type Payload struct {
	Device   string    `json:"device"`    // the device ID the bundle is for
	Version  uint64    `json:"version"`   // strictly increasing per device; 1 is the first
	IssuedAt time.Time `json:"issued_at"` // when the server rendered it
	Config   string    `json:"config"`    // the edged YAML configuration file, verbatim
}

// Bundle is a parsed bundle: the payload and the exact bytes that were signed.
type Bundle struct {
	Payload
	KeyID     string
	raw       []byte // decoded payload bytes, as signed
	signature []byte
}

type envelope struct {
	Format    string `json:"format"`
	KeyID     string `json:"key_id"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// KeyID names a public key: hex of the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

func signedMessage(payload []byte) []byte {
	msg := make([]byte, 0, len(Format)+1+len(payload))
	msg = append(msg, Format...)
	msg = append(msg, '\n')
	return append(msg, payload...)
}

// Sign returns the encoded bundle for p, signed with key.
func Sign(key ed25519.PrivateKey, p Payload) ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode bundle payload: %w", err)
	}
	env := envelope{
		Format:    Format,
		KeyID:     KeyID(key.Public().(ed25519.PublicKey)),
		Payload:   base64.StdEncoding.EncodeToString(raw),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(key, signedMessage(raw))),
	}
	out, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	return out, nil
}

func (p *Payload) check() error {
	switch {
	case p.Device == "" || len(p.Device) > 128:
		return fmt.Errorf("%w: device must be 1..128 characters", ErrMalformed)
	case p.Version == 0:
		return fmt.Errorf("%w: version must be 1 or more", ErrMalformed)
	case p.IssuedAt.IsZero():
		return fmt.Errorf("%w: issued_at is missing", ErrMalformed)
	}
	return nil
}

// strictUnmarshal decodes exactly one JSON value into v, refusing unknown fields and trailing
// data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// Parse decodes a bundle strictly (unknown fields, trailing data, bad base64, a missing field
// or a size over MaxSize are errors) without checking its signature: use Verify for anything
// that will be applied.
func Parse(data []byte) (*Bundle, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMalformed, len(data), MaxSize)
	}
	var env envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.Signature == "" {
		return nil, ErrUnsigned
	}
	// Only the canonical encoding (what Sign writes, optionally with a final newline) is
	// accepted, so that no byte of a bundle, signed or not, can change unnoticed.
	if canon, err := json.Marshal(env); err != nil || !bytes.Equal(canon, bytes.TrimSuffix(data, []byte("\n"))) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrMalformed)
	}
	if env.Format != Format {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrMalformed, env.Format, Format)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(env.Signature)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadSignature, len(sig), ed25519.SignatureSize)
	}
	b := &Bundle{KeyID: env.KeyID, raw: raw, signature: sig}
	if err := strictUnmarshal(raw, &b.Payload); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if err := b.Payload.check(); err != nil {
		return nil, err
	}
	return b, nil
}

// Verify parses data and accepts it only if it is signed by pub, is for device, and is newer
// than applied (the version now in force; 0 when nothing is). The errors wrap ErrMalformed,
// ErrUnsigned, ErrBadSignature, ErrWrongDevice, ErrRollback or ErrNotNewer.
func Verify(data []byte, pub ed25519.PublicKey, device string, applied uint64) (*Bundle, error) {
	b, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: no valid fleet key to check it with", ErrBadSignature)
	}
	if b.KeyID != KeyID(pub) {
		return nil, fmt.Errorf("%w: it names key %q, the fleet key is %s", ErrBadSignature, b.KeyID, KeyID(pub))
	}
	if !ed25519.Verify(pub, signedMessage(b.raw), b.signature) {
		return nil, fmt.Errorf("%w (bundle key_id %q, fleet key %s)", ErrBadSignature, b.KeyID, KeyID(pub))
	}
	if b.Device != device {
		return nil, fmt.Errorf("%w: it names %q, this device is %q", ErrWrongDevice, b.Device, device)
	}
	switch {
	case b.Version < applied:
		return nil, fmt.Errorf("%w: version %d, applied %d", ErrRollback, b.Version, applied)
	case b.Version == applied:
		return nil, fmt.Errorf("%w: version %d", ErrNotNewer, b.Version)
	}
	return b, nil
}
