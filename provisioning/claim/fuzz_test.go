package claim

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, refuses with ErrInvalid, and that an accepted claim
// survives Encode and Parse unchanged and never shows its token in String or an error.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"server":"https://prov.example.com:8443","ca_sha256":"` + fp + `","token":"ect_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add([]byte(`{"server":"https://[::1]:8443/","ca_sha256":"` + fp + `"}`))
	f.Add([]byte(`{"server":"https://u@h","ca_sha256":"","token":"","fleet_key":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if c.Token != "" && strings.Contains(c.String(), c.Token) {
			t.Fatal("String shows the token")
		}
		out, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode of a parsed claim: %v", err)
		}
		again, err := Parse(out)
		if err != nil || again != c {
			t.Fatalf("round trip: %+v -> %+v, %v", c, again, err)
		}
	})
}
