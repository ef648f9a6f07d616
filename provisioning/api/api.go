// Package api holds the messages of the provisioning HTTP API, shared by provisiond, the
// device agent and edgectl. docs/provisioning.md describes each endpoint.
package api

import (
	"encoding/asn1"
	"time"
)

// Paths of the API. Device endpoints after enrolment need the device's client certificate
// (mTLS); admin endpoints need an operator bearer token.
const (
	PathEnrol     = "/v1/enrol"
	PathBundle    = "/v1/device/bundle"    // GET ?after=VERSION&wait=SECONDS: long-poll
	PathHeartbeat = "/v1/device/heartbeat" // POST Heartbeat
	PathRenew     = "/v1/device/renew"     // POST RenewRequest: a new certificate for the same key
	PathAdmin     = "/v1/admin/"
)

// BundleMediaType is the Content-Type of a signed bundle.
const BundleMediaType = "application/vnd.edgeflux.bundle+json"

// Device statuses.
const (
	StatusPending = "pending" // enrolled, waiting for an operator's approval
	StatusActive  = "active"
	StatusRevoked = "revoked"
)

// EnrolRequest is POSTed by a device with its claim token and a CSR signed by its key; the
// CSR carries the hardware identity (see provisioning/device).
type EnrolRequest struct {
	ClaimToken string `json:"claim_token"`
	CSR        string `json:"csr"` // PEM "CERTIFICATE REQUEST"
}

// EnrolResponse gives the device its identity.
type EnrolResponse struct {
	DeviceID    string `json:"device_id"`
	Certificate string `json:"certificate"` // PEM, the device's client certificate
	CA          string `json:"ca"`          // PEM, the CA that signs the server and devices
	FleetKey    string `json:"fleet_key"`   // base64 Ed25519 public key bundles are signed with
	Status      string `json:"status"`      // active or pending
}

// RenewRequest asks for a new device certificate before the current one expires; the CSR must
// be for the key the device already has (its ID is derived from it).
type RenewRequest struct {
	CSR string `json:"csr"`
}

// RenewResponse is the new certificate (PEM); the old one stops working.
type RenewResponse struct {
	Certificate string `json:"certificate"`
}

// Heartbeat is what a device reports about itself.
type Heartbeat struct {
	AgentVersion    string  `json:"agent_version"`
	FirmwareVersion string  `json:"firmware_version"`
	ConfigVersion   uint64  `json:"config_version"`
	Health          string  `json:"health"` // ok, degraded or error
	Camera          string  `json:"camera,omitempty"`
	Encoder         string  `json:"encoder,omitempty"`
	UptimeSeconds   float64 `json:"uptime_seconds"`
	LastError       string  `json:"last_error,omitempty"`
}

// Error is the body of every 4xx/5xx answer.
type Error struct {
	Error string `json:"error"`
}

// ClaimCreate asks for a new claim token.
type ClaimCreate struct {
	Group           string `json:"group"`
	MaxUses         int    `json:"max_uses"`         // 1 = single-use
	ExpiresIn       string `json:"expires_in"`       // Go duration, e.g. "24h"
	RequireApproval bool   `json:"require_approval"` // enrolled devices wait for `edgectl devices approve`
	Note            string `json:"note,omitempty"`
}

// ClaimToken describes a claim token; Token is set only in the answer that creates it.
type ClaimToken struct {
	ID              string    `json:"id"`
	Token           string    `json:"token,omitempty"`
	Group           string    `json:"group"`
	MaxUses         int       `json:"max_uses"`
	Uses            int       `json:"uses"`
	ExpiresAt       time.Time `json:"expires_at"`
	RequireApproval bool      `json:"require_approval"`
	Note            string    `json:"note,omitempty"`
	CreatedBy       string    `json:"created_by"`
	CreatedAt       time.Time `json:"created_at"`
	// Claim is the claim file to write to the boot partition (with the token), set only on
	// creation.
	Claim string `json:"claim,omitempty"`
}

// Device is the fleet registry's view of one device.
type Device struct {
	ID              string    `json:"id"`
	Serial          string    `json:"serial"`
	Board           string    `json:"board"`
	MACs            []string  `json:"macs"`
	Group           string    `json:"group"`
	Status          string    `json:"status"`
	Online          bool      `json:"online"`
	CertSerial      string    `json:"cert_serial"`
	EnrolledAt      time.Time `json:"enrolled_at"`
	LastSeen        time.Time `json:"last_seen,omitzero"`
	BundleVersion   uint64    `json:"bundle_version"`  // newest bundle issued
	AppliedVersion  uint64    `json:"applied_version"` // what the device reports applied
	AgentVersion    string    `json:"agent_version"`
	FirmwareVersion string    `json:"firmware_version"`
	Health          string    `json:"health"`
	Camera          string    `json:"camera,omitempty"`
	Encoder         string    `json:"encoder,omitempty"`
	UptimeSeconds   float64   `json:"uptime_seconds"`
	LastError       string    `json:"last_error,omitempty"`
	Override        string    `json:"override,omitempty"` // per-device YAML over the group template
}

// Group is a set of devices sharing a configuration template.
type Group struct {
	Name      string    `json:"name"`
	Config    string    `json:"config"` // edged YAML template
	Devices   int       `json:"devices"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// GroupPut creates or replaces a group's template (and pushes it to the group's devices).
type GroupPut struct {
	Config string `json:"config"`
}

// GroupPutResult says how many devices got a new bundle.
type GroupPutResult struct {
	Group   string `json:"group"`
	Devices int    `json:"devices"`
}

// DeviceAssign moves a device to a group.
type DeviceAssign struct {
	Group string `json:"group"`
}

// DeviceOverride sets (or with "" clears) a device's YAML override.
type DeviceOverride struct {
	Config string `json:"config"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail,omitempty"`
}

// OIDHardwareIdentity is the CSR extension in which a device states its hardware identity (a
// JSON HardwareIdentity), covered by the CSR's signature. It sits under a private arc.
var OIDHardwareIdentity = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59658, 1, 1}

// HardwareIdentity is what a device says it is.
type HardwareIdentity struct {
	Serial string   `json:"serial"`
	Board  string   `json:"board"`
	MACs   []string `json:"macs"`
}
