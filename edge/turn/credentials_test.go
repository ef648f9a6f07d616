package turn

import (
	"encoding/json"
	"testing"
	"time"
)

func TestCredentials(t *testing.T) {
	// Vector computed with coturn's documented recipe:
	//   echo -n "1795003600:alice" | openssl dgst -binary -sha1 -hmac "north-wind-secret" | base64
	user, pass := Credentials([]byte("north-wind-secret"), "alice", time.Hour, time.Unix(1795000000, 0))
	if user != "1795003600:alice" || pass != "Ca4gxcS98Wor+BBIde9LzV5QJFg=" {
		t.Fatalf("Credentials = %q, %q", user, pass)
	}
	exp, id, ok := parseUsername(user)
	if !ok || id != "alice" || exp.Unix() != 1795003600 {
		t.Fatalf("parseUsername(%q) = %v %q %v", user, exp, id, ok)
	}
	for _, bad := range []string{"", "alice", ":alice", "-5:alice", "12x:alice", "99999999999999999999:a"} {
		if _, _, ok := parseUsername(bad); ok {
			t.Errorf("parseUsername(%q) accepted", bad)
		}
	}
	if _, id, ok := parseUsername("1795003600"); !ok || id != "" {
		t.Errorf("a bare timestamp is a valid coturn username")
	}
	if _, id, _ := parseUsername("1795003600:a:b"); id != "a:b" {
		t.Errorf("identity with a colon: got %q", id)
	}
}

func TestICEServers(t *testing.T) {
	now := time.Unix(1795000000, 0)
	got := ICEServers([]string{"stun:192.0.2.1:3478", "turn:192.0.2.1:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"},
		[]byte("north-wind-secret"), "alice", time.Hour, now)
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"urls":["stun:192.0.2.1:3478"]},{"urls":["turn:192.0.2.1:3478?transport=udp","turns:turn.example.com:5349?transport=tcp"],"username":"1795003600:alice","credential":"Ca4gxcS98Wor+BBIde9LzV5QJFg="}]`
	if string(b) != want {
		t.Fatalf("ice_servers\n got %s\nwant %s", b, want)
	}
	if got := ICEServers(nil, []byte("x"), "alice", time.Hour, now); got != nil {
		t.Fatalf("no URLs gave %v", got)
	}
	w := got[1].WebRTC()
	if w.Username != "1795003600:alice" || w.Credential != got[1].Credential || len(w.URLs) != 2 {
		t.Fatalf("WebRTC() = %+v", w)
	}
}
