package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	t0         = time.Unix(1795000000, 0)
)

// signRaw builds a token from literal header and payload JSON, signed like Mint does, so
// tests can say exactly what is on the wire.
func signRaw(secret []byte, header, payload string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

const hs256 = `{"alg":"HS256","typ":"JWT"}`

func aliceClaims() Claims {
	return Claims{
		Identity:  "alice",
		Name:      "Alice",
		Room:      "lobby",
		Grants:    Grants{Publish: true, Subscribe: true},
		IssuedAt:  t0,
		NotBefore: t0,
		ExpiresAt: t0.Add(time.Hour),
	}
}

// goldenAlice is Mint(testSecret, aliceClaims()); it pins the wire format (claim order, no
// padding, header) so a change to it is deliberate.
const goldenAlice = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." +
	"eyJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsInJvb20iOiJsb2JieSIsImdyYW50cyI6eyJwdWJsaXNoIjp0cnVlLCJzdWJzY3JpYmUiOnRydWUsImFkbWluIjpmYWxzZX0sImlhdCI6MTc5NTAwMDAwMCwibmJmIjoxNzk1MDAwMDAwLCJleHAiOjE3OTUwMDM2MDB9." +
	"7mHs6Go5Q5bKwvnNnqQ1mvZiTMKgJXpz3RLuiYFlpCw"

func TestMintGolden(t *testing.T) {
	got, err := Mint(testSecret, aliceClaims())
	if err != nil {
		t.Fatal(err)
	}
	if got != goldenAlice {
		t.Fatalf("Mint changed its output:\n got %s\nwant %s", got, goldenAlice)
	}
	c, err := Verify(testSecret, got, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if want := aliceClaims(); c != want {
		t.Fatalf("round trip: got %+v, want %+v", c, want)
	}
}

func TestVerify(t *testing.T) {
	const alice = `{"sub":"alice","room":"lobby","grants":{"publish":true,"subscribe":true,"admin":false},"iat":1795000000,"nbf":1795000000,"exp":1795003600}`
	valid := signRaw(testSecret, hs256, alice)
	now := t0.Add(10 * time.Minute)
	for _, tc := range []struct {
		name  string
		token string
		now   time.Time
		want  error // nil: valid
	}{
		{"valid", valid, now, nil},
		{"valid at iat", valid, t0, nil},
		{"before nbf within leeway", valid, t0.Add(-Leeway + time.Second), nil},
		{"before nbf beyond leeway", signRaw(testSecret, hs256, `{"sub":"a","room":"r","nbf":1795000100,"exp":1795003600}`), t0, ErrNotYetValid},
		{"iat in the future", signRaw(testSecret, hs256, `{"sub":"a","room":"r","iat":1795000100,"exp":1795003600}`), t0, ErrNotYetValid},
		{"expired within leeway", valid, t0.Add(time.Hour + Leeway - time.Second), nil},
		{"expired", valid, t0.Add(time.Hour + Leeway), ErrExpired},
		{"no exp", signRaw(testSecret, hs256, `{"sub":"a","room":"r","iat":1795000000}`), now, ErrLifetime},
		{"lifetime 24h", signRaw(testSecret, hs256, `{"sub":"a","room":"r","iat":1795000000,"exp":1795086400}`), now, nil},
		{"lifetime over 24h", signRaw(testSecret, hs256, `{"sub":"a","room":"r","iat":1795000000,"exp":1795086401}`), now, ErrLifetime},
		{"exp before iat", signRaw(testSecret, hs256, `{"sub":"a","room":"r","iat":1795000000,"exp":1795000000}`), t0.Add(-time.Second), ErrLifetime},
		{"no iat, exp within 24h", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600}`), now, nil},
		{"no iat, exp beyond 24h", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1796003600}`), now, ErrLifetime},
		{"fractional dates", signRaw(testSecret, hs256, `{"sub":"a","room":"r","iat":1795000000.5,"exp":1.7950036e9}`), now, nil},
		{"minimal header", signRaw(testSecret, `{"alg":"HS256"}`, alice), now, nil},
		{"kid header", signRaw(testSecret, `{"typ":"jwt","alg":"HS256","kid":"k1"}`, alice), now, nil},
		{"registered claims tolerated", signRaw(testSecret, hs256, `{"iss":"edgectl","aud":["edge"],"jti":"x","sub":"a","room":"r","exp":1795003600}`), now, nil},
		{"admin any room", signRaw(testSecret, hs256, `{"sub":"a","room":"*","grants":{"admin":true},"exp":1795003600}`), now, nil},

		{"alg none", signRaw(testSecret, `{"alg":"none","typ":"JWT"}`, alice), now, ErrAlgorithm},
		{"alg none unsigned", strings.TrimRight(signRaw(testSecret, `{"alg":"none"}`, alice), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), now, ErrAlgorithm},
		{"alg HS512", signRaw(testSecret, `{"alg":"HS512"}`, alice), now, ErrAlgorithm},
		{"alg RS256", signRaw(testSecret, `{"alg":"RS256"}`, alice), now, ErrAlgorithm},
		{"alg lower case", signRaw(testSecret, `{"alg":"hs256"}`, alice), now, ErrAlgorithm},
		{"alg missing", signRaw(testSecret, `{"typ":"JWT"}`, alice), now, ErrAlgorithm},
		{"alg not a string", signRaw(testSecret, `{"alg":256}`, alice), now, ErrAlgorithm},
		{"crit header", signRaw(testSecret, `{"alg":"HS256","crit":["exp"]}`, alice), now, ErrAlgorithm},
		{"jwk header", signRaw(testSecret, `{"alg":"HS256","jwk":{}}`, alice), now, ErrAlgorithm},
		{"typ JWE", signRaw(testSecret, `{"alg":"HS256","typ":"JOSE+JSON"}`, alice), now, ErrMalformed},
		{"other secret", signRaw([]byte("another secret of thirty-two bytes!!"), hs256, alice), now, ErrSignature},
		{"signature flipped", valid[:len(valid)-2] + flip(valid[len(valid)-2]) + valid[len(valid)-1:], now, ErrSignature},
		{"signature truncated", valid[:len(valid)-3], now, ErrSignature},
		{"payload swapped", swapPayload(valid, `{"sub":"mallory","room":"lobby","grants":{"admin":true},"exp":1795003600}`), now, ErrSignature},
		{"padding", valid + "=", now, ErrMalformed},
		{"padded header", strings.Replace(valid, ".", "==.", 1), now, ErrMalformed},
		{"non-canonical base64", nonCanonical(valid), now, ErrMalformed},
		{"newline", valid[:10] + "\n" + valid[10:], now, ErrMalformed},
		{"space", " " + valid, now, ErrMalformed},
		{"standard base64 alphabet", strings.Replace(valid, "e", "+", 1), now, ErrMalformed},
		{"two parts", valid[:strings.LastIndex(valid, ".")], now, ErrMalformed},
		{"four parts", valid + ".x", now, ErrMalformed},
		{"empty", "", now, ErrMalformed},
		{"dots", "..", now, ErrMalformed},
		{"too long", strings.Repeat("a", MaxTokenLen+1), now, ErrMalformed},
		{"header not JSON", signRaw(testSecret, `alg=HS256`, alice), now, ErrMalformed},
		{"header array", signRaw(testSecret, `["HS256"]`, alice), now, ErrMalformed},
		{"duplicate alg", signRaw(testSecret, `{"alg":"none","alg":"HS256"}`, alice), now, ErrMalformed},
		{"payload not JSON", signRaw(testSecret, hs256, `{"sub":`), now, ErrMalformed},
		{"payload trailing data", signRaw(testSecret, hs256, alice+`{}`), now, ErrMalformed},
		{"payload invalid UTF-8", signRaw(testSecret, hs256, `{"sub":"a`+"\xff"+`","room":"r","exp":1795003600}`), now, ErrMalformed},
		{"duplicate sub", signRaw(testSecret, hs256, `{"sub":"alice","sub":"admin","room":"r","exp":1795003600}`), now, ErrMalformed},
		{"unknown claim", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600,"grant":{"admin":true}}`), now, ErrInvalidClaims},
		{"unknown grant", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600,"grants":{"root":true}}`), now, ErrInvalidClaims},
		{"grant as string", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600,"grants":{"admin":"true"}}`), now, ErrInvalidClaims},
		{"grant as number", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600,"grants":{"admin":1}}`), now, ErrInvalidClaims},
		{"grants not an object", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600,"grants":["admin"]}`), now, ErrInvalidClaims},
		{"sub number", signRaw(testSecret, hs256, `{"sub":7,"room":"r","exp":1795003600}`), now, ErrInvalidClaims},
		{"sub null", signRaw(testSecret, hs256, `{"sub":null,"room":"r","exp":1795003600}`), now, ErrInvalidClaims},
		{"sub empty", signRaw(testSecret, hs256, `{"sub":"","room":"r","exp":1795003600}`), now, ErrInvalidClaims},
		{"sub missing", signRaw(testSecret, hs256, `{"room":"r","exp":1795003600}`), now, ErrInvalidClaims},
		{"sub control character", signRaw(testSecret, hs256, `{"sub":"a\u0000b","room":"r","exp":1795003600}`), now, ErrInvalidClaims},
		{"sub too long", signRaw(testSecret, hs256, `{"sub":"`+strings.Repeat("a", 129)+`","room":"r","exp":1795003600}`), now, ErrInvalidClaims},
		{"room missing", signRaw(testSecret, hs256, `{"sub":"a","exp":1795003600}`), now, ErrInvalidClaims},
		{"any room without admin", signRaw(testSecret, hs256, `{"sub":"a","room":"*","grants":{"publish":true},"exp":1795003600}`), now, ErrInvalidClaims},
		{"exp string", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":"1795003600"}`), now, ErrInvalidClaims},
		{"exp negative", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":-1}`), now, ErrInvalidClaims},
		{"exp huge", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1e300}`), now, ErrInvalidClaims},
		{"exp null", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":null}`), now, ErrInvalidClaims},
		{"aud number", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600,"aud":1}`), now, ErrInvalidClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Verify(testSecret, tc.token, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Identity == "" || c.Room == "" || c.ExpiresAt.IsZero() {
					t.Fatalf("Verify returned incomplete claims %+v", c)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: got %v, want %v", err, tc.want)
			}
			if c != (Claims{}) {
				t.Fatalf("Verify returned claims %+v with an error", c)
			}
		})
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func swapPayload(tok, payload string) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(payload))
	return strings.Join(parts, ".")
}

// nonCanonical changes the unused low bits of the signature's last character, which lenient
// decoders accept as the same bytes.
func nonCanonical(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	// A 32-byte signature is 43 characters; the last carries 4 bits and 2 unused ones.
	return tok[:len(tok)-1] + string(alphabet[last^1])
}

func TestVerifyWeakSecret(t *testing.T) {
	_, err := Verify(testSecret[:31], goldenAlice, t0)
	if !errors.Is(err, ErrWeakSecret) {
		t.Fatalf("got %v, want ErrWeakSecret", err)
	}
}

func TestVerifyErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name, token, want string
	}{
		{"alg", signRaw(testSecret, `{"alg":"none"}`, `{}`), `token: unsupported algorithm: alg "none", only HS256 is accepted`},
		{"expired", goldenAlice, "token: expired: at 2026-11-18T12:06:40Z (now 2026-11-19T11:06:40Z)"},
		{"unknown claim", signRaw(testSecret, hs256, `{"sub":"a","room":"r","exp":1795003600,"role":"x"}`), `token: invalid claims: unknown claim "role"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(testSecret, tc.token, t0.Add(24*time.Hour))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
}

func TestMint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret []byte
		edit   func(*Claims)
		want   error
	}{
		{"ok", testSecret, func(*Claims) {}, nil},
		{"iat defaults to now", testSecret, func(c *Claims) {
			c.IssuedAt, c.NotBefore = time.Time{}, time.Time{}
			c.ExpiresAt = time.Now().Add(time.Hour)
		}, nil},
		{"admin any room", testSecret, func(c *Claims) { c.Room, c.Grants.Admin = AnyRoom, true }, nil},
		{"weak secret", []byte("short"), func(*Claims) {}, ErrWeakSecret},
		{"no exp", testSecret, func(c *Claims) { c.ExpiresAt = time.Time{} }, ErrLifetime},
		{"too long", testSecret, func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(MaxLifetime + time.Second) }, ErrLifetime},
		{"exp before iat", testSecret, func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) }, ErrLifetime},
		{"nbf after exp", testSecret, func(c *Claims) { c.NotBefore = c.ExpiresAt.Add(time.Second) }, ErrLifetime},
		{"no identity", testSecret, func(c *Claims) { c.Identity = "" }, ErrInvalidClaims},
		{"no room", testSecret, func(c *Claims) { c.Room = "" }, ErrInvalidClaims},
		{"any room without admin", testSecret, func(c *Claims) { c.Room = AnyRoom }, ErrInvalidClaims},
		{"name with newline", testSecret, func(c *Claims) { c.Name = "A\nB" }, ErrInvalidClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := aliceClaims()
			tc.edit(&c)
			tok, err := Mint(tc.secret, c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Mint: got %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			got, err := Verify(tc.secret, tok, c.ExpiresAt.Add(-time.Second))
			if err != nil {
				t.Fatalf("Verify(Mint()): %v", err)
			}
			if got.Identity != c.Identity || got.Room != c.Room || got.Grants != c.Grants || !got.ExpiresAt.Equal(c.ExpiresAt.Truncate(time.Second)) {
				t.Fatalf("round trip: got %+v from %+v", got, c)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	pub := Claims{Identity: "a", Room: "lobby", Grants: Grants{Publish: true}}
	sub := Claims{Identity: "a", Room: "lobby", Grants: Grants{Subscribe: true}}
	admin := Claims{Identity: "ops", Room: AnyRoom, Grants: Grants{Admin: true}}
	for _, tc := range []struct {
		name string
		c    Claims
		room string
		need Grant
		want error
	}{
		{"publish in its room", pub, "lobby", GrantPublish, nil},
		{"nothing needed", sub, "lobby", 0, nil},
		{"publish without grant", sub, "lobby", GrantPublish, ErrForbidden},
		{"both needed, one held", pub, "lobby", GrantPublish | GrantSubscribe, ErrForbidden},
		{"other room", pub, "kitchen", GrantPublish, ErrWrongRoom},
		{"no room named", pub, "", GrantPublish, ErrWrongRoom},
		{"admin any room", admin, "kitchen", GrantAdmin, nil},
		{"admin is not publish", admin, "kitchen", GrantPublish, ErrForbidden},
		{"room named star", pub, AnyRoom, GrantPublish, ErrWrongRoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.c.Allows(tc.room, tc.need); !errors.Is(err, tc.want) {
				t.Fatalf("Allows(%q, %s): got %v, want %v", tc.room, tc.need, err, tc.want)
			}
		})
	}
	if err := admin.Has(GrantAdmin); err != nil {
		t.Fatalf("Has(admin): %v", err)
	}
	if err := pub.Has(GrantAdmin); !errors.Is(err, ErrForbidden) || err.Error() != "token: grant missing: needs admin" {
		t.Fatalf("Has(admin) on a publisher: %v", err)
	}
}

func TestGrantString(t *testing.T) {
	for g, want := range map[Grant]string{0: "none", GrantPublish: "publish", GrantPublish | GrantSubscribe | GrantAdmin: "publish|subscribe|admin"} {
		if got := g.String(); got != want {
			t.Errorf("Grant(%d).String() = %q, want %q", g, got, want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	tok, err := Mint(testSecret, aliceClaims())
	if err != nil {
		b.Fatal(err)
	}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(testSecret, tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
