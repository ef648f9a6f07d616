package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/device"
	"github.com/edgeflux/edge/provisioning/provtest"
	"github.com/edgeflux/edge/provisioning/store/pgtest"
)

const fleetSize = 50

func groupConfig(bitrate int) string {
	return fmt.Sprintf("# lab group template\nversion: 1\ncamera:\n  device: synthetic\nencoder:\n  bitrate_kbps: %d\n", bitrate)
}

// TestFleet is issue 6's first point, end to end on loopback, against SQLite and a real
// PostgreSQL server: 50 devices enrol at once with one multi-use claim token, get
// certificates and configuration, are listed online by edgectl, and one change to their group
// reaches all of them within 10 s.
func TestFleet(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		fleet(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		fleet(t, pgtest.Start(t))
	})
}

func edgectl(t *testing.T, env *provtest.Env, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	conn := []string{"-server", env.URL, "-ca", env.CAFile, "-token-file", env.TokenFile}
	full := append([]string{}, args[:2]...)
	full = append(full, conn...)
	full = append(full, args[2:]...)
	if args[0] == "audit" {
		full = append([]string{"audit"}, conn...)
		full = append(full, args[1:]...)
	}
	if err := run(full, &out, &errb); err != nil {
		t.Fatalf("edgectl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func fleet(t *testing.T, dsn string) {
	leakcheck.Check(t)
	env := provtest.Start(t, dsn, provtest.Options{})
	dir := t.TempDir()

	v1 := filepath.Join(dir, "v1.yaml")
	os.WriteFile(v1, []byte(groupConfig(1500)), 0o644)
	out := edgectl(t, env, "groups", "set", "lab", v1)
	if !strings.Contains(out, "pushed to 0 devices") {
		t.Fatalf("groups set: %q", out)
	}
	claimPath := filepath.Join(dir, "claim.json")
	edgectl(t, env, "claim", "create", "-group", "lab", "-uses", fmt.Sprint(fleetSize), "-expires", "1h", "-o", claimPath)
	claimFile, err := os.ReadFile(claimPath)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	configs := make([]string, fleetSize)
	start := time.Now()
	for i := range fleetSize {
		d := filepath.Join(dir, fmt.Sprintf("dev%02d", i))
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "claim.json"), claimFile, 0o600)
		configs[i] = filepath.Join(d, "edged.yaml")
		agent, err := device.New(device.Config{
			StateDir: filepath.Join(d, "state"), ConfigPath: configs[i], ClaimPath: filepath.Join(d, "claim.json"),
			Hardware:     device.Hardware{Serial: fmt.Sprintf("SN-%04d", i), Board: "Raspberry Pi 4 Model B Rev 1.5", MACs: []string{fmt.Sprintf("dc:a6:32:00:00:%02x", i)}},
			AgentVersion: "test", FirmwareVersion: "2026.11", HeartbeatEvery: 2 * time.Second, PollWait: 15 * time.Second,
			BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := agent.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("device %d: %v", i, err)
			}
		}()
	}
	waitAll(t, configs, 1, "bitrate_kbps: 1500", 60*time.Second)
	t.Logf("%s: %d devices enrolled concurrently with one claim token and applied configuration version 1 in %v", dsnKind(dsn), fleetSize, time.Since(start).Round(time.Millisecond))
	for i, c := range configs {
		claimLeft, _ := os.ReadFile(filepath.Join(filepath.Dir(c), "claim.json"))
		if strings.Contains(string(claimLeft), "ect_") {
			t.Fatalf("device %d kept its claim token after enrolment", i)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(c), "state", "device.crt")); err != nil {
			t.Fatalf("device %d has no certificate: %v", i, err)
		}
	}

	// edgectl lists them online (a heartbeat or a poll within the online window).
	deadline := time.Now().Add(20 * time.Second)
	for {
		out = edgectl(t, env, "devices", "list")
		if strings.Contains(out, fmt.Sprintf("%d devices, %d online", fleetSize, fleetSize)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgectl devices list after 20 s:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	t.Logf("edgectl devices list (first lines):\n%s\n...\n%s", strings.Join(lines[:3], "\n"), lines[len(lines)-1])
	if got := strings.Count(out, "online"); got != fleetSize+1 {
		t.Fatalf("want %d devices online, table:\n%s", fleetSize, out)
	}

	// One change to the group reaches all 50.
	v2 := filepath.Join(dir, "v2.yaml")
	os.WriteFile(v2, []byte(groupConfig(2500)), 0o644)
	pushed := time.Now()
	out = edgectl(t, env, "groups", "set", "lab", v2)
	if !strings.Contains(out, fmt.Sprintf("pushed to %d devices", fleetSize)) {
		t.Fatalf("groups set: %q", out)
	}
	waitAll(t, configs, 2, "bitrate_kbps: 2500", 10*time.Second)
	t.Logf("%s: group change reached all %d devices in %v", dsnKind(dsn), fleetSize, time.Since(pushed).Round(time.Millisecond))

	// The devices report the new version; the audit log says who did what.
	deadline = time.Now().Add(20 * time.Second)
	reported := func() int {
		var ds []api.Device
		json.Unmarshal([]byte(edgectl(t, env, "devices", "list", "-group", "lab", "-json")), &ds)
		n := 0
		for _, d := range ds {
			if d.AppliedVersion == 2 && d.BundleVersion == 2 && d.Online && d.Health == "ok" {
				n++
			}
		}
		return n
	}
	for reported() < fleetSize {
		if time.Now().After(deadline) {
			t.Fatalf("devices did not report config version 2:\n%s", edgectl(t, env, "devices", "list"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	audit := edgectl(t, env, "audit", "-limit", "200")
	for _, want := range []string{`alice\s+group\.put\s+lab`, `alice\s+claim\.create\s+clm_`, `device:dev-\S+\s+device\.enrol`} {
		if !regexp.MustCompile(want).MatchString(audit) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
	rec := httptest.NewRecorder()
	env.Server.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		fmt.Sprintf(`provisiond_devices{status="active",online="true"} %d`, fleetSize),
		fmt.Sprintf(`provisiond_enrolments_total{result="enrolled"} %d`, fleetSize),
		fmt.Sprintf(`provisiond_bundles_total{result="issued"} %d`, 2*fleetSize),
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, rec.Body)
		}
	}
	show := edgectl(t, env, "devices", "show", strings.Fields(lines[1])[0])
	if !strings.Contains(show, "applied 2, newest issued 2") || !strings.Contains(show, "Raspberry Pi 4") {
		t.Errorf("devices show:\n%s", show)
	}
}

func dsnKind(dsn string) string {
	if strings.HasPrefix(dsn, "postgres") {
		return "PostgreSQL"
	}
	return "SQLite"
}

// waitAll waits until every configuration file holds version want with text in it.
func waitAll(t *testing.T, paths []string, want uint64, text string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		missing := 0
		for _, p := range paths {
			data, err := os.ReadFile(p)
			a, perr := device.ParseApplied(data)
			if err != nil || perr != nil || a.Version < want || !strings.Contains(string(a.Body), text) {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d devices do not have configuration version %d after %v", missing, len(paths), want, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
