package turn

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"github.com/edgeflux/edge/internal/leakcheck"
)

var testSecret = []byte("a TURN secret of more than 16 bytes")

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func newTestServer(t *testing.T, edit func(*Config)) *Server {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", Secret: testSecret, TCP: true, Logger: testLogger(t)}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	return s
}

// allocate makes one TURN allocation as a pion client; close releases it.
func allocate(t *testing.T, server, user, pass string) (relay net.PacketConn, closeFn func(), err error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: DefaultRealm,
		RTO: 100 * time.Millisecond, LoggerFactory: newPionLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	closeFn = func() {
		if relay != nil {
			relay.Close()
		}
		c.Close()
		conn.Close()
	}
	relay, err = c.Allocate()
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return relay, closeFn, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRelayCountsBytes(t *testing.T) {
	leakcheck.Check(t)
	s := newTestServer(t, nil)
	user, pass := Credentials(testSecret, "alice", time.Hour, time.Now())
	relay, closeRelay, err := allocate(t, s.Addr().String(), user, pass)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.AllocationsActive != 1 || st.AllocationsTotal != 1 {
		t.Fatalf("after one allocation: %+v", st)
	}
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("relayed address %s, want the public IP 127.0.0.1", relay.LocalAddr())
	}

	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	out := []byte("from the client, through the relay") // 34 bytes
	if _, err := relay.WriteTo(out, peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], out) {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	back := []byte("and back") // 8 bytes
	if _, err := peer.WriteTo(back, from); err != nil {
		t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = relay.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], back) {
		t.Fatalf("client got %q, %v", buf[:n], err)
	}
	// The relay counts after its write returns, which can be after the peer has read.
	waitFor(t, "the relayed bytes to be counted", func() bool {
		st := s.Stats()
		return st.BytesToPeers == uint64(len(out)) && st.BytesFromPeers == uint64(len(back))
	})

	closeRelay() // the client refreshes with lifetime 0
	waitFor(t, "the allocation to close", func() bool { return s.Stats().AllocationsActive == 0 })
}

func TestCredentialsRefused(t *testing.T) {
	leakcheck.Check(t)
	s := newTestServer(t, nil)
	now := time.Now()
	expiredUser, expiredPass := Credentials(testSecret, "alice", time.Hour, now.Add(-2*time.Hour))
	goodUser, _ := Credentials(testSecret, "alice", time.Hour, now)
	_, otherPass := Credentials([]byte("somebody else's secret, long enough"), "alice", time.Hour, now)
	for _, tc := range []struct{ name, user, pass string }{
		{"expired", expiredUser, expiredPass},
		{"wrong secret", goodUser, otherPass},
		{"not a REST username", "alice", "password"},
		{"expiry edited", strings.Replace(expiredUser, expiredUser[:3], "999", 1), expiredPass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			_, _, err := allocate(t, s.Addr().String(), tc.user, tc.pass)
			if err == nil {
				t.Fatal("allocation succeeded")
			}
			after := s.Stats()
			if after.AllocationsTotal != before.AllocationsTotal {
				t.Fatalf("stats %+v after a refused allocation", after)
			}
			t.Logf("refused: %v", err)
		})
	}
	if s.Stats().AuthFailures < 3 {
		t.Fatalf("auth failures not counted: %+v", s.Stats())
	}
}

func TestUserQuota(t *testing.T) {
	leakcheck.Check(t)
	s := newTestServer(t, func(c *Config) { c.UserQuota = 2 })
	user, pass := Credentials(testSecret, "alice", time.Hour, time.Now())
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for range 2 {
		_, c, err := allocate(t, s.Addr().String(), user, pass)
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, c)
	}
	_, _, err := allocate(t, s.Addr().String(), user, pass)
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("third allocation: got %v, want 486 Allocation Quota Reached", err)
	}
	// Another identity has its own quota.
	bobUser, bobPass := Credentials(testSecret, "bob", time.Hour, time.Now())
	_, c, err := allocate(t, s.Addr().String(), bobUser, bobPass)
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	closers = append(closers, c)
	if st := s.Stats(); st.AllocationsActive != 3 || st.AllocationsRejected != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Freeing one of alice's gives her room again.
	closers[0]()
	closers = closers[1:]
	waitFor(t, "alice's allocation to close", func() bool { return s.Stats().AllocationsActive == 2 })
	_, c, err = allocate(t, s.Addr().String(), user, pass)
	if err != nil {
		t.Fatalf("after freeing one: %v", err)
	}
	closers = append(closers, c)
}

func TestReserveIsAtomic(t *testing.T) {
	s := &Server{cfg: Config{UserQuota: 1}, active: map[string]int{}}
	if err := s.reserve("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.reserve("a"); !errors.Is(err, ErrQuota) {
		t.Fatalf("second reserve: %v", err)
	}
	s.release("a")
	if err := s.reserve("a"); err != nil {
		t.Fatal(err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" valid
	}{
		{"loopback", Config{Listen: "127.0.0.1:0", Secret: testSecret}, ""},
		{"all addresses with public IP", Config{Listen: ":0", PublicIP: net.IPv4(192, 0, 2, 1), Secret: testSecret}, ""},
		{"all addresses without public IP", Config{Listen: ":0", Secret: testSecret}, "turn.public_ip is required"},
		{"unspecified public IP", Config{Listen: ":0", PublicIP: net.IPv4zero, Secret: testSecret}, "is unspecified"},
		{"no port", Config{Listen: "127.0.0.1", Secret: testSecret}, "turn.listen"},
		{"bad port", Config{Listen: "127.0.0.1:99999", Secret: testSecret}, "not a number below 65536"},
		{"short secret", Config{Listen: "127.0.0.1:0", Secret: []byte("short")}, "need at least 16"},
		{"half a port range", Config{Listen: "127.0.0.1:0", Secret: testSecret, RelayMinPort: 50000}, "set both"},
		{"relay bind not an IP", Config{Listen: "127.0.0.1:0", Secret: testSecret, RelayBind: "eth0"}, "not an IP address"},
		{"negative quota", Config{Listen: "127.0.0.1:0", Secret: testSecret, UserQuota: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			s, err := New(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("New accepted the config")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.PublicIP = net.ParseIP("2001:db8::1") })
	port := s.Addr().(*net.UDPAddr).Port
	want := []string{
		"turn:[2001:db8::1]:" + strconv.Itoa(port) + "?transport=udp",
		"turn:[2001:db8::1]:" + strconv.Itoa(port) + "?transport=tcp",
	}
	if got := s.URLs(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("URLs() = %v, want %v", got, want)
	}
}

func TestRelayPortRange(t *testing.T) {
	leakcheck.Check(t)
	s := newTestServer(t, func(c *Config) { c.RelayMinPort, c.RelayMaxPort = 41000, 41009 })
	user, pass := Credentials(testSecret, "alice", time.Hour, time.Now())
	relay, closeRelay, err := allocate(t, s.Addr().String(), user, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRelay()
	if p := relay.LocalAddr().(*net.UDPAddr).Port; p < 41000 || p > 41009 {
		t.Fatalf("relay port %d outside 41000-41009", p)
	}
}
