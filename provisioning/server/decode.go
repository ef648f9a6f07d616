package server

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/claim"
)

// maxBody bounds every request body.
const maxBody = 256 << 10

// decodeStrict decodes exactly one JSON object into v: unknown fields and trailing data are
// errors.
func decodeStrict(data []byte, v any) error {
	if len(data) > maxBody {
		return fmt.Errorf("%w: body over %d bytes", ErrBadRequest, maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrBadRequest)
	}
	return nil
}

// DecodeEnrol decodes an enrolment request and its CSR, and checks the CSR (signature, key
// type, hardware identity).
func DecodeEnrol(data []byte) (api.EnrolRequest, *x509.CertificateRequest, HardwareIdentity, string, error) {
	var req api.EnrolRequest
	var hw HardwareIdentity
	if err := decodeStrict(data, &req); err != nil {
		return req, nil, hw, "", err
	}
	if err := claim.CheckToken(req.ClaimToken); err != nil {
		return req, nil, hw, "", fmt.Errorf("%w: claim_token: %v", ErrBadRequest, err)
	}
	block, rest := pem.Decode([]byte(req.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		return req, nil, hw, "", fmt.Errorf("%w: csr must be one PEM CERTIFICATE REQUEST", ErrBadRequest)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return req, nil, hw, "", fmt.Errorf("%w: csr: %v", ErrBadRequest, err)
	}
	hw, id, err := CheckCSR(csr)
	if err != nil {
		return req, nil, hw, "", fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return req, csr, hw, id, nil
}

// DecodeHeartbeat decodes a device's heartbeat.
func DecodeHeartbeat(data []byte) (api.Heartbeat, error) {
	var hb api.Heartbeat
	if err := decodeStrict(data, &hb); err != nil {
		return hb, err
	}
	switch hb.Health {
	case "ok", "degraded", "error":
	default:
		return hb, fmt.Errorf("%w: health %q: use ok, degraded or error", ErrBadRequest, hb.Health)
	}
	if hb.UptimeSeconds < 0 || hb.UptimeSeconds > 1e10 || hb.UptimeSeconds != hb.UptimeSeconds {
		return hb, fmt.Errorf("%w: uptime_seconds out of range", ErrBadRequest)
	}
	for _, f := range []*string{&hb.AgentVersion, &hb.FirmwareVersion, &hb.Camera, &hb.Encoder} {
		if len(*f) > 256 {
			return hb, fmt.Errorf("%w: a version, camera or encoder over 256 bytes", ErrBadRequest)
		}
	}
	if len(hb.LastError) > 4096 {
		hb.LastError = hb.LastError[:4096]
	}
	return hb, nil
}

var groupName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckGroupName says what a group name may be.
func CheckGroupName(name string) error {
	if !groupName.MatchString(name) {
		return fmt.Errorf("%w: group %q: use 1..63 lowercase letters, digits, . _ -", ErrBadRequest, name)
	}
	return nil
}

// DecodeClaimCreate decodes a request for a claim token.
func DecodeClaimCreate(data []byte) (api.ClaimCreate, time.Duration, error) {
	var c api.ClaimCreate
	if err := decodeStrict(data, &c); err != nil {
		return c, 0, err
	}
	if err := CheckGroupName(c.Group); err != nil {
		return c, 0, err
	}
	if c.MaxUses < 1 || c.MaxUses > 1_000_000 {
		return c, 0, fmt.Errorf("%w: max_uses %d: use 1 (single-use) .. 1000000", ErrBadRequest, c.MaxUses)
	}
	d, err := time.ParseDuration(c.ExpiresIn)
	if err != nil || d < time.Minute || d > 366*24*time.Hour {
		return c, 0, fmt.Errorf("%w: expires_in %q: use a duration from 1m to 8784h, e.g. 24h", ErrBadRequest, c.ExpiresIn)
	}
	if len(c.Note) > 256 {
		return c, 0, fmt.Errorf("%w: note over 256 bytes", ErrBadRequest)
	}
	return c, d, nil
}

// DecodeGroupPut decodes a group template; the template must be a configuration edged accepts.
func DecodeGroupPut(data []byte, name string) (api.GroupPut, error) {
	var g api.GroupPut
	if err := CheckGroupName(name); err != nil {
		return g, err
	}
	if err := decodeStrict(data, &g); err != nil {
		return g, err
	}
	if err := CheckConfig(g.Config, "group "+name); err != nil {
		return g, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return g, nil
}

// DecodeAssign decodes a move of a device to a group.
func DecodeAssign(data []byte) (api.DeviceAssign, error) {
	var a api.DeviceAssign
	if err := decodeStrict(data, &a); err != nil {
		return a, err
	}
	return a, CheckGroupName(a.Group)
}

// DecodeOverride decodes a per-device override (YAML, merged over the group template).
func DecodeOverride(data []byte) (api.DeviceOverride, error) {
	var o api.DeviceOverride
	if err := decodeStrict(data, &o); err != nil {
		return o, err
	}
	if len(o.Config) > MaxConfigSize {
		return o, fmt.Errorf("%w: override over %d bytes", ErrBadRequest, MaxConfigSize)
	}
	return o, nil
}

// DecodeRenew decodes a renewal request: a valid CSR for the same public key as the
// certificate presented.
func DecodeRenew(data []byte, current *x509.Certificate) (*x509.CertificateRequest, error) {
	var req api.RenewRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	block, rest := pem.Decode([]byte(req.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: csr must be one PEM CERTIFICATE REQUEST", ErrBadRequest)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: csr: %v", ErrBadRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: csr signature: %v", ErrBadRequest, err)
	}
	pub, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(current.PublicKey) {
		return nil, fmt.Errorf("%w: csr is not for the key of the certificate presented", ErrBadRequest)
	}
	return csr, nil
}
