// Package coturn runs Debian's coturn (turnserver) for tests: a real external TURN server
// with the TURN REST shared secret, on a free loopback port.
package coturn

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// Start starts Debian's turnserver on a free loopback port with the TURN REST shared secret
// and returns its turn: URL; it is stopped when the test ends. Skips without turnserver.
func Start(t testing.TB, secret []byte) string {
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

func freeUDPPort(t testing.TB) int {
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
