package server

import (
	"errors"
	"testing"
)

func checkDecodeErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrBadRequest) {
		t.Fatalf("decoder error without ErrBadRequest: %v", err)
	}
}

// FuzzDecodeEnrol: the enrolment decoder never panics, refuses with ErrBadRequest, and what it
// accepts has a device ID derived from a checked P-256 CSR.
func FuzzDecodeEnrol(f *testing.F) {
	f.Add([]byte(`{"claim_token":"ect_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","csr":"-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"}`))
	f.Add([]byte(`{"claim_token":"","csr":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, csr, hw, id, err := DecodeEnrol(data)
		checkDecodeErr(t, err)
		if err == nil && (csr == nil || id == "" || hw.Serial == "") {
			t.Fatalf("accepted without CSR, ID or serial: %v %q %+v", csr, id, hw)
		}
	})
}

// FuzzDecodeHeartbeat: the heartbeat decoder never panics and bounds what it accepts.
func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add([]byte(`{"agent_version":"1","firmware_version":"2","config_version":3,"health":"ok","uptime_seconds":1.5}`))
	f.Add([]byte(`{"health":"error","last_error":"x","uptime_seconds":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := DecodeHeartbeat(data)
		checkDecodeErr(t, err)
		if err == nil && (len(hb.LastError) > 4096 || hb.UptimeSeconds < 0) {
			t.Fatalf("accepted out of bounds: %+v", hb)
		}
	})
}

// FuzzDecodeClaimCreate: the claim request decoder never panics and bounds uses and lifetime.
func FuzzDecodeClaimCreate(f *testing.F) {
	f.Add([]byte(`{"group":"lab","max_uses":50,"expires_in":"24h","require_approval":true,"note":"batch 7"}`))
	f.Add([]byte(`{"group":"Lab!","max_uses":0,"expires_in":"-1h"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, ttl, err := DecodeClaimCreate(data)
		checkDecodeErr(t, err)
		if err == nil && (c.MaxUses < 1 || ttl <= 0 || CheckGroupName(c.Group) != nil) {
			t.Fatalf("accepted out of bounds: %+v %v", c, ttl)
		}
	})
}

// FuzzDecodeGroupPut: a template is accepted only when edged would accept it.
func FuzzDecodeGroupPut(f *testing.F) {
	f.Add([]byte(`{"config":"version: 1\ncamera:\n  device: synthetic\n"}`))
	f.Add([]byte(`{"config":"camera: {fps: 1000}"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := DecodeGroupPut(data, "lab")
		checkDecodeErr(t, err)
		if err == nil && CheckConfig(g.Config, "again") != nil {
			t.Fatal("accepted a template edged refuses")
		}
	})
}

// FuzzRender: merging an override over a template never panics, and what it renders edged
// accepts.
func FuzzRender(f *testing.F) {
	f.Add("version: 1\ncamera:\n  device: synthetic\n", "encoder:\n  bitrate_kbps: 900\n")
	f.Add("version: 1\n", "camera: [1]\n")
	f.Add("", "a: &a {b: *a}\n")
	f.Fuzz(func(t *testing.T, template, override string) {
		out, err := Render(template, override, "fuzz")
		if err == nil && CheckConfig(out, "again") != nil {
			t.Fatalf("rendered a configuration edged refuses:\n%s", out)
		}
	})
}
