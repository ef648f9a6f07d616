package device_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/claim"
	"github.com/edgeflux/edge/provisioning/device"
	"github.com/edgeflux/edge/provisioning/provtest"
)

func yml(bitrate int) string {
	return fmt.Sprintf("version: 1\ncamera:\n  device: synthetic\nencoder:\n  bitrate_kbps: %d\n", bitrate)
}

type testDevice struct {
	dir, claimPath, configPath, stateDir string
	logs                                 *provtest.SyncBuffer
	agent                                *device.Agent
	cancel                               context.CancelFunc
	done                                 chan struct{}
}

func newDevice(t *testing.T, c claim.Claim, serial string) *testDevice {
	t.Helper()
	d := &testDevice{dir: t.TempDir(), logs: &provtest.SyncBuffer{}}
	d.claimPath = filepath.Join(d.dir, "edge-claim.json")
	d.configPath = filepath.Join(d.dir, "edged.yaml")
	d.stateDir = filepath.Join(d.dir, "state")
	provtest.WriteClaim(t, d.claimPath, c)
	var err error
	d.agent, err = device.New(device.Config{StateDir: d.stateDir, ConfigPath: d.configPath, ClaimPath: d.claimPath,
		Hardware: device.Hardware{Serial: serial, Board: "test board", MACs: []string{"02:00:00:00:00:01"}}, AgentVersion: "test",
		HeartbeatEvery: 500 * time.Millisecond, PollWait: 10 * time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *testDevice) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go func() {
		defer close(d.done)
		if err := d.agent.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("agent: %v", err)
		}
	}()
	t.Cleanup(d.stop)
}

func (d *testDevice) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.cancel = nil
	}
}

func (d *testDevice) applied() (device.Applied, error) {
	data, err := os.ReadFile(d.configPath)
	if err != nil {
		return device.Applied{}, err
	}
	return device.ParseApplied(data)
}

func (d *testDevice) waitVersion(t *testing.T, v uint64, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if a, err := d.applied(); err == nil && a.Version >= v {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("configuration version %d not applied within %v; device log:\n%s", v, limit, d.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client is the device's mTLS client, made from its state files.
func (d *testDevice) client(t *testing.T, server string) *device.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(d.stateDir, device.CertFile), filepath.Join(d.stateDir, device.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(d.stateDir, device.CAFile))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := device.NewClient(server, cert, pool)
	t.Cleanup(c.Close)
	return c
}

// admin calls the operators' API.
func admin(t *testing.T, env *provtest.Env, method, path string, in, out any) error {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, env.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+env.Token)
	pool := x509.NewCertPool()
	pool.AddCert(env.CA.Cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// registry is everything the server knows, to check that a refusal changed nothing.
func registry(t *testing.T, env *provtest.Env) string {
	t.Helper()
	ctx := context.Background()
	ds, err := env.Store.Devices(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := env.Store.Claims(ctx)
	audit, _ := env.Store.Audit(ctx, 1000)
	revoked, _ := env.Store.RevokedSerials(ctx)
	b, _ := json.Marshal([]any{ds, cs, audit, revoked})
	return string(b)
}

func fileOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestServerRejects is the server's half of issue 6's second point: a reused single-use
// token, an expired token and a revoked certificate are each refused with a clear error, and
// the registry and the device stay as they were.
func TestServerRejects(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{})
	env.PutGroup(t, "lab", yml(1500))
	ctx := context.Background()

	single, _ := env.Claim(t, "lab", 1, time.Hour, false)
	first := newDevice(t, single, "SN-1")
	first.start(t)
	first.waitVersion(t, 1, 10*time.Second)
	for dev, _ := env.Store.Device(ctx, first.agent.Identity().DeviceID); dev.AppliedVersion != 1; dev, _ = env.Store.Device(ctx, first.agent.Identity().DeviceID) {
		time.Sleep(10 * time.Millisecond) // its heartbeat reports version 1
	}
	first.stop() // quiet from here on, so that any change to the registry is the refusal's

	t.Run("reused single-use token", func(t *testing.T) {
		before := registry(t, env)
		second := newDevice(t, single, "SN-2")
		key, _ := device.LoadOrCreateKey(second.stateDir)
		_, err := device.Enrol(ctx, single, key, device.Hardware{Serial: "SN-2"})
		var herr *device.HTTPError
		if !errors.As(err, &herr) || herr.Code != 403 || herr.Message != "claim token has already been used up" {
			t.Fatalf("enrol with a used token: %v", err)
		}
		t.Logf("refused: %v", err)
		if after := registry(t, env); after != before {
			t.Fatalf("registry changed:\n%s\n%s", before, after)
		}
		// The agent keeps its claim (the token did not work) and has no identity.
		second.start(t)
		time.Sleep(300 * time.Millisecond)
		second.stop()
		if !strings.Contains(fileOrEmpty(second.claimPath), single.Token) {
			t.Fatal("the claim file lost its token after a refused enrolment")
		}
		if _, err := os.Stat(filepath.Join(second.stateDir, device.IdentityFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("refused device has an identity: %v", err)
		}
		if !strings.Contains(second.logs.String(), "claim token has already been used up") {
			t.Fatalf("the agent does not say why:\n%s", second.logs)
		}
		if after := registry(t, env); after != before {
			t.Fatalf("registry changed after the agent's attempts")
		}
	})

	t.Run("expired token", func(t *testing.T) {
		expired, _ := env.Claim(t, "lab", 10, -time.Minute, false)
		before := registry(t, env)
		d := newDevice(t, expired, "SN-3")
		key, _ := device.LoadOrCreateKey(d.stateDir)
		_, err := device.Enrol(ctx, expired, key, device.Hardware{Serial: "SN-3"})
		var herr *device.HTTPError
		if !errors.As(err, &herr) || herr.Code != 403 || herr.Message != "claim token has expired" {
			t.Fatalf("enrol with an expired token: %v", err)
		}
		t.Logf("refused: %v", err)
		if after := registry(t, env); after != before {
			t.Fatalf("registry changed:\n%s\n%s", before, after)
		}
	})

	t.Run("unknown token", func(t *testing.T) {
		forged := single
		forged.Token, _ = claim.NewToken()
		before := registry(t, env)
		key, _ := device.LoadOrCreateKey(t.TempDir())
		if _, err := device.Enrol(ctx, forged, key, device.Hardware{Serial: "SN-4"}); err == nil || !strings.Contains(err.Error(), "claim token is not known") {
			t.Fatalf("enrol with an unknown token: %v", err)
		}
		if after := registry(t, env); after != before {
			t.Fatal("registry changed")
		}
	})

	t.Run("revoked certificate", func(t *testing.T) {
		id := first.agent.Identity().DeviceID
		first.logs = &provtest.SyncBuffer{}
		watcher := newDevice(t, single, "SN-1") // the first device's agent again, long-polling
		watcher.stateDir, watcher.configPath = first.stateDir, first.configPath
		watcher.agent, _ = device.New(device.Config{StateDir: first.stateDir, ConfigPath: first.configPath, ClaimPath: first.claimPath,
			PollWait: 10 * time.Second, HeartbeatEvery: time.Hour, BackoffMin: time.Second, BackoffMax: time.Second,
			Logger: slog.New(slog.NewJSONHandler(watcher.logs, nil))})
		watcher.start(t)
		time.Sleep(200 * time.Millisecond) // its long-poll is waiting
		revokedAt := time.Now()
		if err := admin(t, env, "POST", "/v1/admin/devices/"+id+"/revoke", nil, nil); err != nil {
			t.Fatal(err)
		}
		for !strings.Contains(watcher.logs.String(), "refuses this device's certificate (revoked)") {
			if time.Since(revokedAt) > 5*time.Second {
				t.Fatalf("the waiting agent was not told of its revocation:\n%s", watcher.logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("a waiting device learned of its revocation %v after it", time.Since(revokedAt).Round(time.Millisecond))
		watcher.stop()
		configBefore := fileOrEmpty(first.configPath)
		before := registry(t, env)
		c := first.client(t, env.URL)
		_, err := c.Bundle(ctx, 0, 0)
		if !errors.Is(err, device.ErrRevoked) || !strings.Contains(err.Error(), "certificate revoked") {
			t.Fatalf("bundle with a revoked certificate: %v", err)
		}
		t.Logf("refused: %v", err)
		if err := c.Heartbeat(ctx, api.Heartbeat{Health: "ok", ConfigVersion: 99}); !errors.Is(err, device.ErrRevoked) {
			t.Fatalf("heartbeat with a revoked certificate: %v", err)
		}
		// A group change does not reach it either.
		if err := admin(t, env, "PUT", "/v1/admin/groups/lab", api.GroupPut{Config: yml(1600)}, nil); err != nil {
			t.Fatal(err)
		}
		if v, _, _ := env.Store.Bundle(ctx, id); v != 1 {
			t.Fatalf("a revoked device got bundle version %d", v)
		}
		if _, err := c.Bundle(ctx, 0, 0); !errors.Is(err, device.ErrRevoked) {
			t.Fatalf("bundle after the group change: %v", err)
		}
		after := registry(t, env)
		// Only the operator's group change is new; the device's record is as it was.
		var b, a []json.RawMessage
		json.Unmarshal([]byte(before), &b)
		json.Unmarshal([]byte(after), &a)
		if string(a[0]) != string(b[0]) {
			t.Fatalf("revoked device's record changed:\n%s\n%s", b[0], a[0])
		}
		if fileOrEmpty(first.configPath) != configBefore {
			t.Fatal("the device's configuration changed")
		}
		// And it cannot come back with a new token.
		fresh, _ := env.Claim(t, "lab", 5, time.Hour, false)
		key, _ := device.LoadOrCreateKey(first.stateDir)
		if _, err := device.Enrol(ctx, fresh, key, device.Hardware{Serial: "SN-1"}); err == nil || !strings.Contains(err.Error(), "device is revoked") {
			t.Fatalf("re-enrol of a revoked device: %v", err)
		}
		if cs, _ := env.Store.Claims(ctx); cs[len(cs)-1].Uses != 0 {
			t.Fatal("a refused re-enrolment used the token")
		}
	})
}

// TestApproval: a device enrolled with an approval-required claim gets its identity but no
// configuration until an operator approves it.
func TestApproval(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{})
	env.PutGroup(t, "lab", yml(1500))
	c, _ := env.Claim(t, "lab", 1, time.Hour, true)
	d := newDevice(t, c, "SN-1")
	d.start(t)
	for d.agent.Identity().DeviceID == "" {
		time.Sleep(10 * time.Millisecond)
	}
	id := d.agent.Identity().DeviceID
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(d.configPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a pending device got configuration: %v", err)
	}
	var dev api.Device
	admin(t, env, "GET", "/v1/admin/devices/"+id, nil, &dev)
	if dev.Status != api.StatusPending {
		t.Fatalf("status %q, want pending", dev.Status)
	}
	if err := admin(t, env, "POST", "/v1/admin/devices/"+id+"/approve", nil, &dev); err != nil {
		t.Fatal(err)
	}
	took := d.waitVersion(t, 1, 5*time.Second)
	t.Logf("approved device got its configuration %v after approval", took)
}

// TestServerDown is issue 6's fifth point: a device whose server is down keeps its last good
// configuration, and enrols or updates as soon as the server is back.
func TestServerDown(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{})
	env.PutGroup(t, "lab", yml(1500))
	c, _ := env.Claim(t, "lab", 1, time.Hour, false)

	// First boot with the server down: the device waits, keeping its claim.
	env.Stop()
	d := newDevice(t, c, "SN-1")
	d.start(t)
	time.Sleep(time.Second)
	if _, err := os.Stat(filepath.Join(d.stateDir, device.IdentityFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("enrolled with the server down?")
	}
	if !strings.Contains(fileOrEmpty(d.claimPath), c.Token) {
		t.Fatal("claim token gone while the server was down")
	}
	back := time.Now()
	env.Restart(t)
	d.waitVersion(t, 1, 10*time.Second)
	t.Logf("server back: device enrolled and applied its configuration %v later", time.Since(back).Round(time.Millisecond))
	good := fileOrEmpty(d.configPath)

	// Server down again: the device keeps running with its last good configuration.
	env.Stop()
	time.Sleep(1500 * time.Millisecond)
	if fileOrEmpty(d.configPath) != good {
		t.Fatal("configuration changed while the server was down")
	}
	if a, err := d.applied(); err != nil || a.Version != 1 {
		t.Fatalf("configuration in force: %v %v", a.Version, err)
	}
	if !strings.Contains(d.logs.String(), "cannot reach the provisioning server; keeping the configuration in force") {
		t.Fatalf("device did not say it is keeping its configuration:\n%s", d.logs)
	}
	// An operator changes the group meanwhile (straight into the server, whose listener is down).
	body, _ := json.Marshal(api.GroupPut{Config: yml(2500)})
	req := httptest.NewRequest("PUT", "/v1/admin/groups/lab", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+env.Token)
	rec := httptest.NewRecorder()
	env.Server.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("group change: %d %s", rec.Code, rec.Body)
	}
	back = time.Now()
	env.Restart(t)
	d.waitVersion(t, 2, 10*time.Second)
	t.Logf("server back: device applied the change made while it was away %v later", time.Since(back).Round(time.Millisecond))
}

// TestRateLimit: enrolment attempts beyond the burst are refused with 429 and change nothing.
func TestRateLimit(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{EnrolRate: 0.01, EnrolBurst: 3})
	env.PutGroup(t, "lab", yml(1500))
	c, _ := env.Claim(t, "lab", 100, time.Hour, false)
	var codes []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, _ := device.LoadOrCreateKey(t.TempDir())
			_, err := device.Enrol(context.Background(), c, key, device.Hardware{Serial: fmt.Sprint("SN-", i)})
			code := 201
			var herr *device.HTTPError
			if errors.As(err, &herr) {
				code = herr.Code
			} else if err != nil {
				t.Error(err)
			}
			mu.Lock()
			codes = append(codes, code)
			mu.Unlock()
		}()
	}
	wg.Wait()
	ok, limited := 0, 0
	for _, c := range codes {
		switch c {
		case 201:
			ok++
		case 429:
			limited++
		}
	}
	if ok != 3 || limited != 5 {
		t.Fatalf("answers %v: want 3 enrolled and 5 rate limited", codes)
	}
	if ds, _ := env.Store.Devices(context.Background(), ""); len(ds) != 3 {
		t.Fatalf("%d devices stored, want 3", len(ds))
	}
	if cs, _ := env.Store.Claims(context.Background()); cs[0].Uses != 3 {
		t.Fatalf("claim used %d times, want 3", cs[0].Uses)
	}
}

// TestNoSecretsInLogs runs enrolment, updates and refusals with every log captured, and looks
// for the claim token, the operator token, the device's private key and the fleet's signing
// key in them.
func TestNoSecretsInLogs(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{})
	env.PutGroup(t, "lab", yml(1500))
	c, _ := env.Claim(t, "lab", 1, time.Hour, false)
	d := newDevice(t, c, "SN-1")
	d.start(t)
	d.waitVersion(t, 1, 10*time.Second)
	admin(t, env, "PUT", "/v1/admin/groups/lab", api.GroupPut{Config: yml(1700)}, nil)
	d.waitVersion(t, 2, 10*time.Second)
	// Refusals log too: a reused token, a bad operator token, a revoked device.
	other := newDevice(t, c, "SN-2")
	other.start(t)
	time.Sleep(300 * time.Millisecond)
	other.stop()
	req, _ := http.NewRequest("GET", env.URL+"/v1/admin/devices", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token) // a claim token where an operator token belongs
	pool := x509.NewCertPool()
	pool.AddCert(env.CA.Cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
	}
	hc.CloseIdleConnections()
	admin(t, env, "POST", "/v1/admin/devices/"+d.agent.Identity().DeviceID+"/revoke", nil, nil)
	time.Sleep(time.Second)
	d.stop()

	keyPEM, _ := os.ReadFile(filepath.Join(d.stateDir, device.KeyFile))
	block, _ := pem.Decode(keyPEM)
	signDER, _ := x509.MarshalPKCS8PrivateKey(env.SigningKey)
	secrets := map[string]string{
		"claim token":             c.Token,
		"claim token body":        strings.TrimPrefix(c.Token, claim.TokenPrefix),
		"operator token":          env.Token,
		"device key (PEM body)":   strings.Split(string(keyPEM), "\n")[1],
		"device key (hex)":        fmt.Sprintf("%x", block.Bytes),
		"signing key (PEM body)":  strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: signDER})), "\n")[1],
		"signing key seed (hex)":  fmt.Sprintf("%x", env.SigningKey.Seed()),
		"signing key seed (b64)":  fmt.Sprintf("%s", mustB64(env.SigningKey.Seed())),
		"device key (b64 of DER)": mustB64(block.Bytes)[:40],
	}
	logs := env.Logs.String() + d.logs.String() + other.logs.String()
	if len(strings.Split(logs, "\n")) < 10 {
		t.Fatalf("too few log lines to mean anything:\n%s", logs)
	}
	for name, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the %s appears in a log line", name)
		}
	}
	t.Logf("%d log lines checked for %d secrets", strings.Count(logs, "\n"), len(secrets))
}

// TestAgentRefusesForeignKey: a server that signs with a key other than the fleet key the
// device enrolled with (rotated without the devices, or an impostor with the database) cannot
// configure it; the device keeps its configuration and reports why in its heartbeat, where
// the operator sees it.
func TestAgentRefusesForeignKey(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{})
	env.PutGroup(t, "lab", yml(1500))
	c, _ := env.Claim(t, "lab", 1, time.Hour, false)
	d := newDevice(t, c, "SN-1")
	d.start(t)
	d.waitVersion(t, 1, 10*time.Second)
	good := fileOrEmpty(d.configPath)

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	env.ResignWith(t, other)
	if err := admin(t, env, "PUT", "/v1/admin/groups/lab", api.GroupPut{Config: yml(2500)}, nil); err != nil {
		t.Fatal(err)
	}
	id := d.agent.Identity().DeviceID
	deadline := time.Now().Add(10 * time.Second)
	for {
		dev, _ := env.Store.Device(context.Background(), id)
		if strings.Contains(dev.LastError, "does not verify with the fleet key") {
			if dev.Health != "degraded" || dev.AppliedVersion != 1 {
				t.Fatalf("device reports %+v", dev)
			}
			t.Logf("device refused and reported: %s", dev.LastError)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device did not report the refusal; its log:\n%s", d.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fileOrEmpty(d.configPath) != good {
		t.Fatal("configuration changed")
	}
}

// TestImageClaim: without a claim on the boot partition, the claim built into the image is
// used; a read-only image claim keeps its token (and the agent says so).
func TestImageClaim(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{})
	env.PutGroup(t, "lab", yml(1500))
	c, _ := env.Claim(t, "lab", 5, time.Hour, false)
	dir := t.TempDir()
	image := filepath.Join(dir, "image", "claim.json")
	os.MkdirAll(filepath.Dir(image), 0o755)
	provtest.WriteClaim(t, image, c)
	os.Chmod(filepath.Dir(image), 0o555) // read-only, as in a squashfs image
	defer os.Chmod(filepath.Dir(image), 0o755)
	logs := &provtest.SyncBuffer{}
	agent, err := device.New(device.Config{StateDir: filepath.Join(dir, "state"), ConfigPath: filepath.Join(dir, "edged.yaml"),
		ClaimPath: filepath.Join(dir, "boot", "edge-claim.json"), ImageClaimPath: image, Hardware: device.Hardware{Serial: "SN-9"},
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d := &testDevice{dir: dir, configPath: filepath.Join(dir, "edged.yaml"), stateDir: filepath.Join(dir, "state"), logs: logs, agent: agent}
	d.start(t)
	d.waitVersion(t, 1, 10*time.Second)
	if os.Geteuid() != 0 && !strings.Contains(logs.String(), "could not remove the used claim token") {
		t.Errorf("no warning about the token left in the read-only image:\n%s", logs)
	}
}

// TestRenewal: a certificate close to expiry is renewed for the same key; the device goes on
// with the new one, the old one keeps working until the next renewal (a lost answer cannot
// lock the device out), and then stops.
func TestRenewal(t *testing.T) {
	leakcheck.Check(t)
	env := provtest.Start(t, "sqlite:"+filepath.Join(t.TempDir(), "fleet.db"), provtest.Options{CertValidity: time.Hour})
	env.PutGroup(t, "lab", yml(1500))
	c, _ := env.Claim(t, "lab", 1, time.Hour, false)
	d := newDevice(t, c, "SN-1")
	logs := &provtest.SyncBuffer{}
	var err error
	d.agent, err = device.New(device.Config{StateDir: d.stateDir, ConfigPath: d.configPath, ClaimPath: d.claimPath,
		Hardware: device.Hardware{Serial: "SN-1"}, HeartbeatEvery: time.Hour, PollWait: 10 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, RenewBefore: 2 * time.Hour,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Keep the enrolment certificate, to present it later.
	enrolCert := make(chan []byte, 1)
	go func() {
		for {
			if b, err := os.ReadFile(filepath.Join(d.stateDir, device.CertFile)); err == nil {
				enrolCert <- b
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	d.start(t)
	d.waitVersion(t, 1, 10*time.Second)
	first := <-enrolCert
	for !strings.Contains(logs.String(), "device certificate renewed") {
		time.Sleep(10 * time.Millisecond)
	}
	now, _ := os.ReadFile(filepath.Join(d.stateDir, device.CertFile))
	if bytes.Equal(now, first) {
		t.Fatal("certificate file not replaced")
	}
	id := d.agent.Identity().DeviceID
	dev, _ := env.Store.Device(ctx, id)
	nb, _ := pem.Decode(now)
	nc, _ := x509.ParseCertificate(nb.Bytes)
	if fmt.Sprintf("%x", nc.SerialNumber.Bytes()) != dev.CertSerial {
		t.Fatalf("registry holds serial %s, the device %x", dev.CertSerial, nc.SerialNumber.Bytes())
	}
	// The device works on with the new certificate.
	if err := admin(t, env, "PUT", "/v1/admin/groups/lab", api.GroupPut{Config: yml(1600)}, nil); err != nil {
		t.Fatal(err)
	}
	d.waitVersion(t, 2, 10*time.Second)
	d.stop()

	// The enrolment certificate still works (as if the renewal's answer had been lost) ...
	keyPEM, _ := os.ReadFile(filepath.Join(d.stateDir, device.KeyFile))
	caPEM, _ := os.ReadFile(filepath.Join(d.stateDir, device.CAFile))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	old, _ := tls.X509KeyPair(first, keyPEM)
	oc := device.NewClient(env.URL, old, pool)
	defer oc.Close()
	if _, err := oc.Bundle(ctx, 99, 0); err != nil {
		t.Fatalf("previous certificate refused right after a renewal: %v", err)
	}
	// ... until the device renews again: then only the newest works.
	key, _ := device.LoadOrCreateKey(d.stateDir)
	csr, _ := device.CSR(key, device.Hardware{Serial: "SN-1"})
	cur, _ := tls.X509KeyPair(now, keyPEM)
	cc := device.NewClient(env.URL, cur, pool)
	defer cc.Close()
	if _, err := cc.Renew(ctx, csr); err != nil {
		t.Fatal(err)
	}
	oc.Close()
	if _, err := oc.Bundle(ctx, 99, 0); err == nil || !strings.Contains(err.Error(), "not known") {
		t.Fatalf("certificate two renewals old: %v", err)
	}
	// A CSR for another key is refused.
	other, _ := device.LoadOrCreateKey(t.TempDir())
	csr, _ = device.CSR(other, device.Hardware{Serial: "SN-1"})
	if _, err := cc.Renew(ctx, csr); err != nil {
		t.Logf("refused: %v", err)
	} else {
		t.Fatal("renewal for another key accepted")
	}
}
