//go:build cgo

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/token"
)

// testSecret signs the test's access token (edged verifies JWTs, docs/room-protocol.md).
const testSecret = "edgebench-test-secret-0123456789abcdef"

// adminToken is a token for any room with every grant: subscribe for WHEP, admin for /metrics.
func adminToken(t *testing.T) string {
	t.Helper()
	tok, err := token.Mint([]byte(testSecret), token.Claims{
		Identity: "edgebench", Room: token.AnyRoom,
		Grants:    token.Grants{Publish: true, Subscribe: true, Admin: true},
		ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// edgedBinary builds cmd/edged from this module into a temporary directory, or returns
// $EDGEBENCH_EDGED when it names a binary already built.
func edgedBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("EDGEBENCH_EDGED"); bin != "" {
		return bin
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH to build edged")
	}
	bin := filepath.Join(t.TempDir(), "edged")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/edgeflux/edge/cmd/edged").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/edged: %v\n%s", err, out)
	}
	return bin
}

var servingURL = regexp.MustCompile(`msg="edged serving".* url=(http://[^ ]+)/`)

// startEdged runs the daemon binary on loopback with the synthetic camera and returns its
// base URL and process ID; it is stopped with SIGTERM when the test ends.
func startEdged(t *testing.T, bin string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-camera", "synthetic")
	cmd.Env = append(os.Environ(),
		"EDGED_AUTH_SECRET="+testSecret,
		"EDGED_CAMERA_WIDTH=640", "EDGED_CAMERA_HEIGHT=360", // the path under test, not the encoder
		"EDGED_WEBRTC_UDP_PORT=0", // no fixed port: other edged may run on this machine
		"EDGED_WEBRTC_INTERFACES=lo",
		"EDGED_TURN_ENABLED=false", // its fixed UDP port 3478 may be taken; loopback needs no relay
		"EDGED_WEBRTC_INCLUDE_LOOPBACK=true",
		"EDGED_WEBRTC_MDNS=false",
		"EDGED_LOG_FORMAT=text",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once edged has exited; waitErr is then set
	var waitErr error
	urls := make(chan string, 1)
	var logs bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := servingURL.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("edged did not stop within 10 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("edged log:\n%s", logs.String())
		}
	})
	select {
	case u := <-urls:
		return u, cmd.Process.Pid
	case <-exited:
		t.Fatalf("edged exited at start: %v", waitErr)
	case <-time.After(15 * time.Second):
		t.Fatal("edged did not start serving within 15 s")
	}
	return "", 0
}

// TestAgainstEdged runs the real daemon and five viewers for 3 s: every viewer must get a
// keyframe and packets, with under 1 % loss, and the server's figures must be read.
func TestAgainstEdged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs edged")
	}
	leakcheck.Check(t)
	base, pid := startEdged(t, edgedBinary(t))
	tok := adminToken(t)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{
		"-whep", base + "/whep/camera", "-token", tok,
		"-viewers", "5", "-ramp", "0", "-warmup", "500ms", "-duration", "3s", "-settle", "3s",
		"-server-pid", strconv.Itoa(pid), "-metrics", base + "/metrics", "-json",
	}, &stdout, &stderr)
	if err != nil && err != errChecksFailed {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	var rep runReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not the JSON report: %v\n%s", err, stdout.String())
	}
	if len(rep.Steps) != 1 {
		t.Fatalf("%d steps in the report, want 1", len(rep.Steps))
	}
	s := rep.Steps[0]
	t.Logf("ttff p50 %.0f ms p99 %.0f ms, %.0f kbit/s per viewer (min %.0f), loss %.2f %%, server %.1f %% CPU, RSS %.1f -> %.1f -> %.1f MiB, goroutines %d -> %d -> %d",
		s.TTFFP50Ms, s.TTFFP99Ms, s.KbpsAvg, s.KbpsMin, s.LossPct, s.ServerCPUPct, mib(s.Before.RSS), mib(s.With.RSS), mib(s.After.RSS),
		s.Before.Goroutines, s.With.Goroutines, s.After.Goroutines)
	for _, c := range s.Checks {
		t.Logf("check %q pass=%v: %s", c.Name, c.Pass, c.Detail)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{fmt.Sprintf("every viewer got a keyframe (%d of 5; errors %v)", s.Keyframes, s.JoinErrors), s.Keyframes == 5},
		{fmt.Sprintf("every viewer got packets in the window (%d of 5)", s.WithPackets), s.WithPackets == 5},
		{fmt.Sprintf("loss below 1 %% (%.2f %%, %+v)", s.LossPct, s.Window), s.Window.Expected > 0 && s.LossPct < 1},
		{fmt.Sprintf("a time to first frame (%v ms)", s.TTFFP50Ms), s.TTFFP50Ms > 0},
		{fmt.Sprintf("the server's CPU and RSS were read (%.1f %%, %d bytes)", s.ServerCPUPct, s.With.RSS), s.ServerCPUPct > 0 && s.With.RSS > 0},
		{fmt.Sprintf("the server's goroutines were read from /metrics (%d)", s.With.Goroutines), s.With.Goroutines > 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("want %s", c.what)
		}
	}
}
