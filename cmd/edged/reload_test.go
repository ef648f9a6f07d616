//go:build cgo

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/edgeflux/edge/internal/whepclient"
)

// TestReloadAppliesLiveSettingsWithoutDroppingViewers: SIGHUP re-reads the file; a raised
// viewer limit and log level take effect at once, a viewer already watching keeps
// receiving, a camera change is reported as needing a restart, and a broken file changes
// nothing.
func TestReloadAppliesLiveSettingsWithoutDroppingViewers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edged.yaml")
	write := func(body string) {
		if err := os.WriteFile(path, []byte("version: 1\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("log: {level: info}\nwebrtc: {max_viewers: 1}\ncamera: {width: 640, height: 480}\n")
	d := startDaemonArgs(t, &runHooks{}, []string{"-config", path})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var packets atomic.Int64
	first, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true},
		func(*rtp.Packet) { packets.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var full *whepclient.StatusError
	if _, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true},
		func(*rtp.Packet) {}); !errors.As(err, &full) || full.Code != 503 {
		t.Fatalf("second viewer at max_viewers 1: %v; want 503", err)
	}

	hup := func(want string) {
		t.Helper()
		before := strings.Count(d.stderr.String(), want)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); strings.Count(d.stderr.String(), want) == before; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after SIGHUP:\n%s", want, d.stderr)
			}
		}
	}
	write("log: {level: debug}\nwebrtc: {max_viewers: 5}\ncamera: {width: 1280, height: 720}\n")
	hup("configuration reloaded")
	if line := lastLine(d.stderr.String(), "configuration reloaded"); !strings.Contains(line, "webrtc.max_viewers") ||
		!strings.Contains(line, "log.level") || !strings.Contains(line, "needs_restart=camera") {
		t.Errorf("reload said %q; want max_viewers and log.level applied, camera needing a restart", line)
	}
	second, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true}, func(*rtp.Packet) {})
	if err != nil {
		t.Fatalf("second viewer after raising max_viewers: %v", err)
	}
	defer second.Close()
	before := packets.Load()
	for deadline := time.Now().Add(5 * time.Second); packets.Load() < before+30; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first viewer stopped receiving across the reload")
		}
	}

	write("log: {level: loud}\n")
	hup("configuration reload refused")
	if code, body := d.get(t, "/api/status", testToken); code != 200 || !strings.Contains(body, `"live":true`) {
		t.Errorf("after a refused reload: %d %s", code, body)
	}
}

func lastLine(s, sub string) string {
	i := strings.LastIndex(s, sub)
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(s[:i], "\n") + 1
	end := strings.Index(s[i:], "\n")
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}
