package device

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/atomicfile"
)

// KeyFile is the device's private key in the state directory (PKCS#8 PEM, 0600). It is made
// on the device and never leaves it.
const KeyFile = "device.key"

// LoadOrCreateKey returns the device key in dir, generating an ECDSA P-256 key on first boot.
func LoadOrCreateKey(dir string) (*ecdsa.PrivateKey, error) {
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate device key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
		if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("store device key: %w", err)
		}
		return key, nil
	} else if err != nil {
		return nil, fmt.Errorf("read device key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		os.Chmod(path, 0o600)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("device key %s is not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("device key %s is not ECDSA P-256", path)
	}
	return key, nil
}

// Hardware is the device's hardware identity, stated in its CSR.
type Hardware = api.HardwareIdentity

// DetectHardware reads the identity of the machine: the serial number and model from the
// device tree (ARM boards) or DMI (x86), /etc/machine-id as the serial of last resort, and the
// MAC addresses of the physical network interfaces.
func DetectHardware(root string) Hardware {
	read := func(paths ...string) string {
		for _, p := range paths {
			if b, err := os.ReadFile(filepath.Join(root, p)); err == nil {
				if s := strings.TrimSpace(string(bytes.Trim(b, "\x00"))); s != "" && !strings.EqualFold(s, "To be filled by O.E.M.") {
					return s
				}
			}
		}
		return ""
	}
	hw := Hardware{
		Serial: read("proc/device-tree/serial-number", "sys/firmware/devicetree/base/serial-number", "sys/class/dmi/id/product_serial", "etc/machine-id"),
		Board:  read("proc/device-tree/model", "sys/firmware/devicetree/base/model", "sys/class/dmi/id/product_name"),
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) == 6 {
				if _, err := os.Stat(filepath.Join(root, "sys/class/net", i.Name, "device")); err == nil {
					hw.MACs = append(hw.MACs, i.HardwareAddr.String())
				}
			}
		}
	}
	slices.Sort(hw.MACs)
	return hw
}

// CSR returns a PEM certificate request for key carrying hw (subject CN and serialNumber are
// the serial, OU the board, and the whole identity in the hardware-identity extension).
func CSR(key *ecdsa.PrivateKey, hw Hardware) ([]byte, error) {
	ext, err := json.Marshal(hw)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: hw.Serial, SerialNumber: hw.Serial, OrganizationalUnit: []string{hw.Board}},
		ExtraExtensions: []pkix.Extension{{Id: api.OIDHardwareIdentity, Value: ext}},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}
