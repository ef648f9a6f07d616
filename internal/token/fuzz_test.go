package token

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerify feeds Verify arbitrary tokens (and payloads signed with the right secret, so the
// claims parser is reached): it must not panic, must fail with one of the package's errors,
// and whatever it accepts must be valid claims that Mint can sign again.
func FuzzVerify(f *testing.F) {
	f.Add(goldenAlice, "")
	f.Add("", `{"sub":"a","room":"*","grants":{"admin":true},"exp":1795003600}`)
	f.Add("", `{"sub":"a","room":"r","iat":1795000000.5,"exp":1.7950036e9,"aud":["x"]}`)
	f.Add("", `{"sub":"a","sub":"b","room":"r","exp":1795003600}`)
	f.Add("e30.e30.", "")
	f.Add("eyJhbGciOiJub25lIn0.e30.", "")
	now := t0.Add(time.Minute)
	sentinels := []error{ErrMalformed, ErrAlgorithm, ErrSignature, ErrExpired, ErrNotYetValid, ErrLifetime, ErrInvalidClaims}
	f.Fuzz(func(t *testing.T, tok, payload string) {
		if payload != "" {
			tok = signRaw(testSecret, hs256, payload)
		}
		c, err := Verify(testSecret, tok, now)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("Verify(%q) returned %v, which wraps none of the package's errors", tok, err)
		}
		if c.IssuedAt.IsZero() { // Mint would take the wall clock
			c.IssuedAt = c.ExpiresAt.Add(-time.Hour)
		}
		again, err := Mint(testSecret, c)
		if err != nil {
			t.Fatalf("Verify accepted claims Mint refuses: %+v: %v", c, err)
		}
		if _, err := Verify(testSecret, again, now); err != nil {
			t.Fatalf("re-minted token fails: %v", err)
		}
	})
}
