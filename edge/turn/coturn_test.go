package turn

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/edgeflux/edge/internal/leakcheck"
)

// coturn starts Debian's turnserver on a free loopback port with the TURN REST shared secret
// and returns its turn: URL; it is stopped when the test ends. Skips without turnserver.
func coturn(t *testing.T, secret []byte) string {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Skip("turnserver not found (Debian: apt-get install coturn); skipping the external coturn test")
	}
	port := freeUDPPort(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`listening-ip=127.0.0.1
listening-port=%d
relay-ip=127.0.0.1
min-port=40000
max-port=60000
use-auth-secret
static-auth-secret=%s
realm=edge.test
allow-loopback-peers
no-cli
no-tls
no-dtls
no-multicast-peers
no-rfc5780
no-software-attribute
log-file=stdout
simple-log
pidfile=%s
userdb=%s
`, port, secret, filepath.Join(dir, "turnserver.pid"), filepath.Join(dir, "turndb"))
	confPath := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", confPath)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start turnserver: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("turnserver log:\n%s", logs.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); !stunAnswers(addr); {
		select {
		case err := <-exited:
			t.Fatalf("turnserver exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("turnserver does not answer STUN on %s after 10 s:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "turn:" + addr + "?transport=udp"
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// stunAnswers sends one STUN binding request and waits 200 ms for the answer.
func stunAnswers(addr string) bool {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if _, err := c.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return err == nil && stun.IsMessage(buf[:n])
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWebRTCThroughCoturn is the external-TURN path: the same Credentials and ICEServers,
// against a real coturn with static-auth-secret.
func TestWebRTCThroughCoturn(t *testing.T) {
	leakcheck.Check(t)
	secret := []byte("coturn-shared-secret-for-the-test")
	url := coturn(t, secret)
	now := time.Now()
	got := relayCall(t,
		ICEServers([]string{url}, secret, "alice", time.Hour, now),
		ICEServers([]string{url}, secret, "bob", time.Hour, now), 200)
	t.Logf("%d RTP packets relayed through coturn (%s)", got, url)

	t.Run("expired credentials refused", func(t *testing.T) {
		pc := relayOnlyPeer(t, ICEServers([]string{url}, secret, "alice", time.Hour, now.Add(-2*time.Hour)))
		if _, err := pc.CreateDataChannel("x", nil); err != nil {
			t.Fatal(err)
		}
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if sdp := gathered(t, pc, offer).SDP; strings.Contains(sdp, "typ relay") {
			t.Fatalf("coturn gave a relay candidate for expired credentials:\n%s", sdp)
		}
		pc.Close()
	})
	t.Run("wrong secret refused", func(t *testing.T) {
		pc := relayOnlyPeer(t, ICEServers([]string{url}, []byte("not the coturn secret at all"), "alice", time.Hour, now))
		if _, err := pc.CreateDataChannel("x", nil); err != nil {
			t.Fatal(err)
		}
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if sdp := gathered(t, pc, offer).SDP; strings.Contains(sdp, "typ relay") {
			t.Fatalf("coturn gave a relay candidate for a wrong secret:\n%s", sdp)
		}
		pc.Close()
	})
}
