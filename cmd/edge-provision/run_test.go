package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/provisioning/device"
	"github.com/edgeflux/edge/provisioning/provtest"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun runs the agent as systemd would, with real commands for restart and readiness,
// against a provisioning server on loopback: it enrols, writes edged's configuration and
// restarts edged through the command.
func TestRun(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{})
	env.PutGroup(t, "lab", "version: 1\ncamera:\n  device: synthetic\n")
	c, _ := env.Claim(t, "lab", 1, time.Hour, false)
	dir := t.TempDir()
	claimPath, cfgPath, marker := filepath.Join(dir, "claim.json"), filepath.Join(dir, "edged.yaml"), filepath.Join(dir, "restarted")
	provtest.WriteClaim(t, claimPath, c)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-state", filepath.Join(dir, "state"), "-config", cfgPath, "-claim", claimPath,
			"-serial", "SN-42", "-board", "test board", "-restart-cmd", "touch " + marker, "-ready-cmd", "test -e " + marker,
			"-log-level", "debug"}, logs, logs, nil)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, _ := os.ReadFile(cfgPath)
		_, restarted := os.Stat(marker)
		_, pending := os.Stat(filepath.Join(dir, "state", device.PendingFile))
		if a, err := device.ParseApplied(data); err == nil && a.Version == 1 && restarted == nil && pending != nil {
			break // written, edged restarted, readiness confirmed
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("no configuration after 15 s:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "state", device.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("device key: %v %v", fi, err)
	}
	if claim, _ := os.ReadFile(claimPath); strings.Contains(string(claim), c.Token) {
		t.Fatal("claim token not removed")
	}
	if strings.Contains(logs.String(), c.Token) {
		t.Fatal("claim token in the log")
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, &out, &out, nil); err != nil || !strings.HasPrefix(out.String(), "edge-provision ") {
		t.Fatalf("%v %q", err, out.String())
	}
}
