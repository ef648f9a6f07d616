package claim

import (
	"errors"
	"strings"
	"testing"
)

const fp = "5f2c1e3a4b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"

func TestParse(t *testing.T) {
	tok, _ := NewToken()
	good := `{"server":"https://prov.example.com:8443","ca_sha256":"` + fp + `","token":"` + tok + `"}`
	tests := []struct {
		name, in, msg string
	}{
		{"valid", good, ""},
		{"no token (used)", `{"server":"https://prov.example.com","ca_sha256":"` + fp + `"}`, ""},
		{"http", strings.Replace(good, "https:", "http:", 1), "not an https://host[:port] URL"},
		{"path", strings.Replace(good, ":8443", ":8443/x", 1), "not an https://host[:port] URL"},
		{"short fingerprint", strings.Replace(good, fp, fp[:60], 1), "64 lowercase hex"},
		{"upper-case fingerprint", strings.Replace(good, fp, strings.ToUpper(fp), 1), "64 lowercase hex"},
		{"bad token", strings.Replace(good, tok, "ect_short", 1), "token is not"},
		{"foreign token", strings.Replace(good, tok, "ghp_"+tok[4:], 1), "does not start"},
		{"unknown field", strings.Replace(good, `{`, `{"wifi":"x",`, 1), "unknown field"},
		{"trailing", good + "{}", "trailing"},
		{"not JSON", "server=https://x", "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(c.String(), tok) {
					t.Fatal("String shows the token")
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Parse: %v, want %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), tok) {
				t.Fatal("error repeats the token")
			}
		})
	}
}

func TestToken(t *testing.T) {
	a, _ := NewToken()
	b, _ := NewToken()
	if a == b || CheckToken(a) != nil || len(HashToken(a)) != 64 || HashToken(a) == HashToken(b) {
		t.Fatalf("tokens %q %q", a, b)
	}
}
