package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/atomicfile"
	"time"
)

// HardwareIdentity is what a device says it is (api.HardwareIdentity).
type HardwareIdentity = api.HardwareIdentity

// CA issues the server's TLS certificate and the devices' client certificates. Its key is a
// file beside the signing key, never in the database.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// Fingerprint is the hex SHA-256 of the CA certificate, as written in claim files.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreateCA reads ca.crt and ca.key from dir, creating them (ECDSA P-256, 20 years) when
// both are missing.
func LoadOrCreateCA(dir, name string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, errC := os.ReadFile(certPath)
	keyPEM, errK := os.ReadFile(keyPath)
	if errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          randSerial(),
			Subject:               pkix.Name{CommonName: name},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().AddDate(20, 0, 0),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, fmt.Errorf("create CA: %w", err)
		}
		kd, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
		certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(certPath, certPEM, 0o644); err != nil {
			return nil, err
		}
	} else if errC != nil {
		return nil, fmt.Errorf("read CA certificate: %w", errC)
	} else if errK != nil {
		return nil, fmt.Errorf("read CA key: %w", errK)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("CA files in %s are not PEM", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("CA key is %T, want ECDSA", k)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// SerialHex is how certificate serials are stored and compared.
func SerialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// ServerCertificate issues a TLS server certificate for hosts (names or IP addresses).
func (ca *CA) ServerCertificate(hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}, nil
}

// DeviceIDFor derives a device's ID from its public key: "dev-" and 16 hex digits of the
// SHA-256 of the key's DER. The same key always gets the same ID.
func DeviceIDFor(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return "dev-" + hex.EncodeToString(sum[:8]), nil
}

// CheckCSR verifies a device's CSR (ECDSA P-256, good signature, hardware identity present)
// and returns the identity and the device ID.
func CheckCSR(csr *x509.CertificateRequest) (HardwareIdentity, string, error) {
	var hw HardwareIdentity
	if err := csr.CheckSignature(); err != nil {
		return hw, "", fmt.Errorf("CSR signature: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return hw, "", errors.New("CSR key must be ECDSA P-256")
	}
	found := false
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(api.OIDHardwareIdentity) {
			if err := json.Unmarshal(ext.Value, &hw); err != nil {
				return hw, "", fmt.Errorf("CSR hardware identity: %w", err)
			}
			found = true
		}
	}
	if !found {
		return hw, "", errors.New("CSR carries no hardware identity extension")
	}
	if hw.Serial == "" || len(hw.Serial) > 128 || len(hw.Board) > 128 || len(hw.MACs) > 16 {
		return hw, "", errors.New("CSR hardware identity: serial must be 1..128 characters, board up to 128, at most 16 MACs")
	}
	for _, m := range hw.MACs {
		if _, err := net.ParseMAC(m); err != nil {
			return hw, "", fmt.Errorf("CSR hardware identity: MAC %q: %w", m, err)
		}
	}
	id, err := DeviceIDFor(pub)
	return hw, id, err
}

// IssueDevice signs a client certificate for a device: CN = device ID, serial number = the
// hardware serial in the subject, client authentication only.
func (ca *CA) IssueDevice(csr *x509.CertificateRequest, id string, hw HardwareIdentity, validity time.Duration) (*x509.Certificate, []byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: id, SerialNumber: hw.Serial, OrganizationalUnit: []string{hw.Board}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue device certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
