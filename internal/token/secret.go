package token

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxSecretFile bounds what ReadSecret reads.
const maxSecretFile = 4096

// ParseSecret checks a secret given as text (a file's content or EDGED_AUTH_SECRET): the key
// is the text itself without surrounding whitespace, as PyJWT and coturn use a string
// secret, and must be at least MinSecretLen bytes.
func ParseSecret(text []byte) ([]byte, error) {
	s := bytes.TrimSpace(text)
	if len(s) < MinSecretLen {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d (generate one with: head -c 32 /dev/urandom | base64)", ErrWeakSecret, len(s), MinSecretLen)
	}
	return bytes.Clone(s), nil
}

// ReadSecret reads a secret file written by LoadOrCreateSecret (or by hand). The file must not
// be readable by group or others.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read secret %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("read secret %s: mode %#o lets others read it; run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("read secret %s: larger than %d bytes", path, maxSecretFile)
	}
	s, err := ParseSecret(b)
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", path, err)
	}
	return s, nil
}

// LoadOrCreateSecret returns the secret in path, first creating it (and its directory, 0700)
// with 32 random bytes as base64url text, mode 0600, when it does not exist. Creation is
// atomic and never replaces a file another process created meanwhile: the secret is written
// to a temporary file, synced, and hard-linked into place.
func LoadOrCreateSecret(path string) ([]byte, error) {
	s, err := ReadSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	text := base64.RawURLEncoding.EncodeToString(raw) + "\n"
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret: %w", err)
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ReadSecret(path) // another process won the race
		}
		return nil, fmt.Errorf("create secret: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return ReadSecret(path)
}
