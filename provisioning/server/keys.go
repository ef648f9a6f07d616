package server

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/edgeflux/edge/provisioning/atomicfile"
	"github.com/edgeflux/edge/provisioning/claim"
)

// LoadOrCreateSigningKey reads the fleet's Ed25519 bundle-signing key (PKCS#8 PEM) from path,
// creating it (0600) when create is set and the file does not exist. The key lives in a file,
// never in the database: a stolen database cannot sign configuration.
func LoadOrCreateSigningKey(path string, create bool) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("create signing key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	return ParseSigningKey(data)
}

// ParseSigningKey reads an Ed25519 key as PKCS#8 PEM, or as the base64 of its 32-byte seed
// (the form for an environment variable).
func ParseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	if b, _ := pem.Decode(data); b != nil {
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		key, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key is %T, want Ed25519", k)
		}
		return key, nil
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("signing key is neither PKCS#8 PEM nor a base64 32-byte Ed25519 seed")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

var operatorName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$`)

// LoadOperators reads the operator token file: one "NAME SHA256-HEX-OF-TOKEN" per line, #
// comments allowed. It returns hash -> name.
func LoadOperators(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read operator tokens: %w", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !operatorName.MatchString(f[0]) || len(f[1]) != 64 {
			return nil, fmt.Errorf("%s:%d: want NAME SHA256-HEX", path, n)
		}
		out[strings.ToLower(f[1])] = f[0]
	}
	return out, sc.Err()
}

// AddOperator creates a token for name, appends its hash to the operator file and returns the
// token (shown once; only the hash is kept).
func AddOperator(path, name string) (string, error) {
	if !operatorName.MatchString(name) {
		return "", fmt.Errorf("operator name %q: use letters, digits, . _ @ -", name)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := "eop_" + base64.RawURLEncoding.EncodeToString(b)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	line := fmt.Sprintf("%s %s\n", name, claim.HashToken(token))
	if err := atomicfile.Write(path, append(old, line...), 0o600); err != nil {
		return "", err
	}
	return token, nil
}
