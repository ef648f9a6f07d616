package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func sign(t testing.TB, key ed25519.PrivateKey, p Payload) []byte {
	t.Helper()
	b, err := Sign(key, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerify(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	at := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	good := Payload{Device: "dev-1", Version: 5, IssuedAt: at, Config: "version: 1\n"}
	valid := sign(t, key, good)
	tests := []struct {
		name    string
		data    []byte
		device  string
		applied uint64
		want    error
		msg     string
	}{
		{"valid", valid, "dev-1", 4, nil, ""},
		{"first ever", valid, "dev-1", 0, nil, ""},
		{"another key", sign(t, other, good), "dev-1", 4, ErrBadSignature, "does not verify"},
		{"another device", valid, "dev-2", 4, ErrWrongDevice, `names "dev-1", this device is "dev-2"`},
		{"older version", valid, "dev-1", 6, ErrRollback, "version 5, applied 6"},
		{"same version", valid, "dev-1", 5, ErrNotNewer, "version 5"},
		{"unsigned", []byte(strings.Replace(string(valid), `"signature":"`+strings.Split(strings.Split(string(valid), `"signature":"`)[1], `"`)[0]+`"`, `"signature":""`, 1)), "dev-1", 0, ErrUnsigned, "not signed"},
		{"not JSON", []byte("version: 1\n"), "dev-1", 0, ErrMalformed, "malformed"},
		{"unknown field", []byte(strings.Replace(string(valid), `{"format"`, `{"x":1,"format"`, 1)), "dev-1", 0, ErrMalformed, "unknown field"},
		{"trailing data", append(append([]byte{}, valid...), "{}"...), "dev-1", 0, ErrMalformed, "trailing"},
		{"too big", make([]byte, MaxSize+1), "dev-1", 0, ErrMalformed, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Verify(tt.data, pub, tt.device, tt.applied)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not say %q", err, tt.msg)
			}
			if err == nil && (b.Version != 5 || b.Config != good.Config || !b.IssuedAt.Equal(at)) {
				t.Fatalf("payload %+v", b.Payload)
			}
		})
	}
}

// TestEveryByteMatters changes each byte of a bundle in turn: every change is refused.
func TestEveryByteMatters(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	valid := sign(t, key, Payload{Device: "dev-1", Version: 2, IssuedAt: time.Now(), Config: "version: 1\ncamera:\n  device: synthetic\n"})
	for i := range valid {
		for _, x := range []byte{0x01, 0x20, 0x80} {
			mod := append([]byte{}, valid...)
			mod[i] ^= x
			if _, err := Verify(mod, pub, "dev-1", 1); err == nil {
				t.Fatalf("byte %d ^ %#x (%q -> %q) accepted", i, x, valid[i], mod[i])
			}
		}
	}
}

func TestSignRefusesBadPayload(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for _, p := range []Payload{{Version: 1, IssuedAt: time.Now()}, {Device: "d", IssuedAt: time.Now()}, {Device: "d", Version: 1}} {
		if _, err := Sign(key, p); !errors.Is(err, ErrMalformed) {
			t.Errorf("Sign(%+v): %v", p, err)
		}
	}
}
