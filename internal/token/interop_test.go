package token

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pyjwt returns a python3 that can import jwt (Debian's python3-jwt), or skips the test.
func pyjwt(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import jwt").Run() == nil {
			return path
		}
	}
	t.Skip("no python3 with PyJWT (Debian: apt-get install python3-jwt); skipping the interoperability test")
	return ""
}

// TestPyJWTInterop checks both directions against an independent implementation: a token
// PyJWT mints verifies here, and a token Mint makes decodes in PyJWT with the same claims.
func TestPyJWTInterop(t *testing.T) {
	py := pyjwt(t)
	now := time.Now()
	iat := now.Unix()
	exp := now.Add(time.Hour).Unix()

	t.Run("PyJWT to Go", func(t *testing.T) {
		script := `import jwt, sys
print(jwt.encode({"sub": "bob", "name": "Bob", "room": "lobby",
                  "grants": {"publish": False, "subscribe": True, "admin": False},
                  "iat": int(sys.argv[2]), "nbf": int(sys.argv[2]), "exp": int(sys.argv[3])},
                 sys.argv[1], algorithm="HS256"))`
		out, err := exec.Command(py, "-c", script, string(testSecret), strconv.FormatInt(iat, 10), strconv.FormatInt(exp, 10)).CombinedOutput()
		if err != nil {
			t.Fatalf("PyJWT: %v\n%s", err, out)
		}
		tok := strings.TrimSpace(string(out))
		c, err := Verify(testSecret, tok, now)
		if err != nil {
			t.Fatalf("Verify(%s): %v", tok, err)
		}
		want := Claims{Identity: "bob", Name: "Bob", Room: "lobby", Grants: Grants{Subscribe: true},
			IssuedAt: time.Unix(iat, 0), NotBefore: time.Unix(iat, 0), ExpiresAt: time.Unix(exp, 0)}
		if c != want {
			t.Fatalf("got %+v, want %+v", c, want)
		}
		if err := c.Allows("lobby", GrantSubscribe); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify([]byte("another secret of thirty-two bytes!!"), tok, now); err == nil {
			t.Fatal("a PyJWT token verified with the wrong secret")
		}
	})

	t.Run("Go to PyJWT", func(t *testing.T) {
		tok, err := Mint(testSecret, Claims{Identity: "carol", Room: AnyRoom, Grants: Grants{Admin: true},
			IssuedAt: time.Unix(iat, 0), ExpiresAt: time.Unix(exp, 0)})
		if err != nil {
			t.Fatal(err)
		}
		script := `import jwt, json, sys
print(json.dumps(jwt.decode(sys.argv[2], sys.argv[1], algorithms=["HS256"],
                            options={"require": ["exp", "iat", "nbf", "sub"]})))`
		out, err := exec.Command(py, "-c", script, string(testSecret), tok).CombinedOutput()
		if err != nil {
			t.Fatalf("PyJWT rejects %s: %v\n%s", tok, err, out)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got["sub"] != "carol" || got["room"] != "*" || got["grants"].(map[string]any)["admin"] != true ||
			got["exp"] != float64(exp) || got["iat"] != float64(iat) || got["nbf"] != float64(iat) {
			t.Fatalf("PyJWT decoded %v", got)
		}
	})
}
