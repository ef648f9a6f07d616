package device

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/server"
)

// TestCheckEnrolment: the agent stores only an identity it can use: the pinned CA, and a
// certificate for its own key signed by it.
func TestCheckEnrolment(t *testing.T) {
	ca, err := server.LoadOrCreateCA(t.TempDir(), "test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := server.LoadOrCreateCA(t.TempDir(), "other CA")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issue := func(ca *server.CA, k *ecdsa.PrivateKey, id string) string {
		csrPEM, _ := CSR(k, Hardware{Serial: "SN"})
		b, _ := pem.Decode(csrPEM)
		csr, _ := x509.ParseCertificateRequest(b.Bytes)
		_, certPEM, err := ca.IssueDevice(csr, id, Hardware{Serial: "SN"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return string(certPEM)
	}
	good := api.EnrolResponse{DeviceID: "dev-1", Certificate: issue(ca, key, "dev-1"), CA: string(ca.CertPEM)}
	tests := []struct {
		name string
		resp api.EnrolResponse
		pin  string
		err  string
	}{
		{"good", good, ca.Fingerprint(), ""},
		{"another CA than pinned", api.EnrolResponse{DeviceID: "dev-1", Certificate: issue(other, key, "dev-1"), CA: string(other.CertPEM)}, ca.Fingerprint(), "not the one pinned"},
		{"certificate from another CA", api.EnrolResponse{DeviceID: "dev-1", Certificate: issue(other, key, "dev-1"), CA: string(ca.CertPEM)}, ca.Fingerprint(), "unknown authority"},
		{"certificate for another key", api.EnrolResponse{DeviceID: "dev-1", Certificate: issue(ca, stranger, "dev-1"), CA: string(ca.CertPEM)}, ca.Fingerprint(), "not for this device's key"},
		{"certificate for another device", api.EnrolResponse{DeviceID: "dev-2", Certificate: good.Certificate, CA: good.CA}, ca.Fingerprint(), `names "dev-1"`},
		{"no certificate", api.EnrolResponse{DeviceID: "dev-1", CA: good.CA}, ca.Fingerprint(), "no device certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEnrolment(tt.resp, tt.pin, key)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("checkEnrolment: %v, want %q", err, tt.err)
			}
		})
	}
}
