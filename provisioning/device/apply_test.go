package device

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/config"
	"github.com/edgeflux/edge/provisioning/bundle"
)

const testDevice = "dev-0123456789abcdef"

func cfgYAML(bitrate int, listen string) string {
	return fmt.Sprintf("version: 1\nhttp:\n  listen: %q\ncamera:\n  device: synthetic\nencoder:\n  bitrate_kbps: %d\n", listen, bitrate)
}

func mkBundle(t testing.TB, key ed25519.PrivateKey, device string, version uint64, yml string) []byte {
	t.Helper()
	b, err := bundle.Sign(key, bundle.Payload{Device: device, Version: version, IssuedAt: time.Now().UTC(), Config: yml})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newApplier(t testing.TB, key ed25519.PrivateKey) *Applier {
	dir := t.TempDir()
	return &Applier{StateDir: filepath.Join(dir, "state"), ConfigPath: filepath.Join(dir, "etc", "edged.yaml"),
		Device: testDevice, FleetKey: key.Public().(ed25519.PublicKey)}
}

func (a *Applier) mkdirs(t testing.TB) {
	os.MkdirAll(a.StateDir, 0o700)
	os.MkdirAll(filepath.Dir(a.ConfigPath), 0o755)
}

// snapshot hashes every file under the applier's directories.
func snapshot(t testing.TB, a *Applier) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range []string{a.StateDir, filepath.Dir(a.ConfigPath)} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				data, _ := os.ReadFile(p)
				sum := sha256.Sum256(data)
				out[p] = hex.EncodeToString(sum[:])
			}
			return nil
		})
	}
	return out
}

func sameFiles(t *testing.T, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("files changed: before %v, after %v", before, after)
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("%s changed", k)
		}
	}
}

// TestApplyRejects is the device's half of issue 6's second point: each refused bundle gets a
// clear error and leaves every file as it was.
func TestApplyRejects(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	a := newApplier(t, key)
	a.mkdirs(t)
	ctx := context.Background()
	for v := uint64(1); v <= 3; v++ {
		if _, err := a.Apply(ctx, mkBundle(t, key, testDevice, v, cfgYAML(1000+int(v), ":8080"))); err != nil {
			t.Fatalf("apply version %d: %v", v, err)
		}
	}
	v2 := mkBundle(t, key, testDevice, 2, cfgYAML(1002, ":8080"))
	v4 := mkBundle(t, key, testDevice, 4, cfgYAML(1004, ":8080"))
	oneByte := append([]byte{}, v4...)
	oneByte[len(oneByte)/2] ^= 0x01
	tests := []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"signed with another key", mkBundle(t, other, testDevice, 4, cfgYAML(1004, ":8080")), bundle.ErrBadSignature, "fleet key"},
		{"one byte changed", oneByte, ErrRejected, "configuration refused"},
		{"for another device", mkBundle(t, key, "dev-ffffffffffffffff", 4, cfgYAML(1004, ":8080")), bundle.ErrWrongDevice, "another device"},
		{"older version replayed", v2, bundle.ErrRollback, "version 2, applied 3"},
		{"unsigned", []byte(`{"format":"edge-bundle/1","key_id":"","payload":"e30=","signature":""}`), bundle.ErrUnsigned, "not signed"},
		{"config edged would refuse", mkBundle(t, key, testDevice, 4, "version: 1\ncamera:\n  fps: 1000\n"), ErrRejected, "camera.fps: 1000 is out of range"},
		{"unknown config key", mkBundle(t, key, testDevice, 4, "version: 1\ncamra: {}\n"), ErrRejected, "camra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, a)
			_, err := a.Apply(ctx, tt.data)
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrRejected) {
				t.Fatalf("Apply: %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not say %q", err, tt.msg)
			}
			t.Logf("refused: %v", err)
			sameFiles(t, before, snapshot(t, a))
			if cur, _ := a.Current(); cur.Version != 3 {
				t.Fatalf("version in force %d, want 3", cur.Version)
			}
		})
	}
	if _, err := a.Apply(ctx, v4); err != nil {
		t.Fatalf("the untampered version 4: %v", err)
	}
}

// Power cut. The parent re-executes the test binary, which applies a new configuration; the
// parent SIGKILLs it at a random moment, then checks the files, as a restarted device would.

const envPowerCutChild = "EDGE_TEST_POWERCUT_CHILD"

type powerCutSetup struct {
	key        ed25519.PrivateKey
	oldFile    []byte // the configuration file in force before
	newBundle  []byte
	newFile    []byte // the file after the apply
	stateFiles map[string][]byte
}

// bigConfig is a valid configuration padded with comments, so that writing it takes a while.
func bigConfig(bitrate int) string {
	var b strings.Builder
	for i := range 800 {
		fmt.Fprintf(&b, "# padding line %04d so that the file takes several writes and the kill lands inside them\n", i)
	}
	b.WriteString(cfgYAML(bitrate, ":8080"))
	return b.String()
}

func powerCutChild() {
	dir := os.Getenv(envPowerCutChild)
	seed, _ := os.ReadFile(filepath.Join(dir, "seed"))
	key := ed25519.NewKeyFromSeed(seed)
	data, _ := os.ReadFile(filepath.Join(dir, "new.bundle"))
	a := &Applier{StateDir: filepath.Join(dir, "state"), ConfigPath: filepath.Join(dir, "etc", "edged.yaml"),
		Device: testDevice, FleetKey: key.Public().(ed25519.PublicKey)}
	// What Apply does, with "start" printed once the bundle is verified: the kills are spread
	// over the writing, which is what a power cut can interrupt.
	b, cfg, err := a.Check(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "check:", err)
		os.Exit(2)
	}
	os.Stdout.WriteString("start\n")
	if err := a.Write(data, b); err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		os.Exit(2)
	}
	if err := a.confirm(context.Background(), b.Version, cfg, false); err != nil {
		fmt.Fprintln(os.Stderr, "confirm:", err)
		os.Exit(2)
	}
	os.Stdout.WriteString("done\n")
}

// TestPowerCut is issue 6's third point: a process applying a new configuration is SIGKILLed
// at random moments (hundreds of times); after each "restart" (Recover) the device has
// exactly the old or exactly the new configuration, complete and valid, never a mix or
// nothing. EDGE_POWERCUT_ITERATIONS sets how many kills (default 300).
func TestPowerCut(t *testing.T) {
	iterations := 300
	if raceEnabled {
		iterations = 100 // each child start costs ~0.3 s under the race detector
	}
	if v := os.Getenv("EDGE_POWERCUT_ITERATIONS"); v != "" {
		fmt.Sscan(v, &iterations)
	}
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	key := ed25519.NewKeyFromSeed(seed)
	oldFile := renderApplied(testDevice, 1, []byte(bigConfig(1000)))
	newCfg := bigConfig(2000)
	newBundle := mkBundle(t, key, testDevice, 2, newCfg)
	newFile := renderApplied(testDevice, 2, []byte(newCfg))
	// SIGKILL is what is simulated here, and the page cache survives it: a tmpfs, where
	// fsync is cheap, lets the kills land inside the writes rather than inside fsync waits.
	root := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "powercut-"); err == nil {
			root = d
			defer os.RemoveAll(d)
		}
	}

	prepare := func(i int) string {
		dir := filepath.Join(root, fmt.Sprint(i))
		os.MkdirAll(filepath.Join(dir, "state"), 0o700)
		os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
		os.WriteFile(filepath.Join(dir, "seed"), seed, 0o600)
		os.WriteFile(filepath.Join(dir, "new.bundle"), newBundle, 0o600)
		os.WriteFile(filepath.Join(dir, "etc", "edged.yaml"), oldFile, 0o644)
		return dir
	}
	// child runs the applier; kill, when >= 0, is how long after "start" it is killed.
	child := func(dir string, kill time.Duration) (finished bool, took time.Duration) {
		cmd := newChild(t, envPowerCutChild+"="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := out.Read(buf); err != nil || string(buf) != "start\n" {
			t.Fatalf("child did not start: %q %v", buf, err)
		}
		t0 := time.Now()
		if kill >= 0 {
			for time.Since(t0) < kill { // spin: sleeping is too coarse for sub-millisecond points
			}
			cmd.Process.Kill()
		}
		n, _ := io.ReadFull(out, buf[:5])
		took = time.Since(t0)
		io.Copy(io.Discard, out)
		cmd.Wait()
		return n == 5 && string(buf[:5]) == "done\n", took
	}

	// How long an undisturbed apply takes, to spread the kills over it.
	var window time.Duration
	for i := range 3 {
		if ok, took := child(prepare(-1-i), -1); !ok {
			t.Fatal("undisturbed apply did not finish")
		} else {
			window = max(window, took)
		}
	}
	var sawOld, sawNew, midway int
	for i := range iterations {
		dir := prepare(i)
		kill := time.Duration(mrand(int64(window) * 11 / 10))
		finished, _ := child(dir, kill)
		if !finished {
			midway++
		}
		// Restart: the applier recovers, as edge-provision does when it starts.
		a := &Applier{StateDir: filepath.Join(dir, "state"), ConfigPath: filepath.Join(dir, "etc", "edged.yaml"),
			Device: testDevice, FleetKey: key.Public().(ed25519.PublicKey)}
		if err := a.Recover(context.Background()); err != nil {
			t.Fatalf("kill %d at %v: recover: %v", i, kill, err)
		}
		got, err := os.ReadFile(a.ConfigPath)
		if err != nil {
			t.Fatalf("kill %d at %v: no configuration: %v", i, kill, err)
		}
		switch {
		case bytes.Equal(got, oldFile):
			sawOld++
		case bytes.Equal(got, newFile):
			sawNew++
		default:
			t.Fatalf("kill %d at %v: configuration is neither old nor new (%d bytes)", i, kill, len(got))
		}
		applied, err := ParseApplied(got)
		if err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		cfg, err := config.Parse(applied.Body, "after kill")
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Fatalf("kill %d: configuration edged would refuse: %v", i, err)
		}
		if a.Floor() != applied.Version {
			t.Fatalf("kill %d: floor %d with version %d in force", i, a.Floor(), applied.Version)
		}
		// The state directory describes the same configuration: its bundle, and no other.
		bundles, _ := filepath.Glob(filepath.Join(dir, "state", "*"+BundlePrefix+"*"))
		if applied.Version == 2 {
			b, err := bundle.Verify(a.CurrentBundle(), key.Public().(ed25519.PublicKey), testDevice, 1)
			if err != nil || b.Config != string(applied.Body) || len(bundles) != 1 {
				t.Fatalf("kill %d: bundle files %v for the new configuration: %v", i, bundles, err)
			}
		} else if len(bundles) != 0 {
			t.Fatalf("kill %d: bundle files %v left with the old configuration", i, bundles)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "etc", ".*tmp*")); len(left) > 0 {
			t.Fatalf("kill %d: temp files left after recovery: %v", i, left)
		}
		os.RemoveAll(dir)
	}
	t.Logf("%d kills spread over an apply of %v: %d killed before it finished; %d left the old configuration, %d the new; never anything else",
		iterations, window, midway, sawOld, sawNew)
	if sawOld == 0 || sawNew == 0 {
		t.Errorf("kills did not cover the apply (old %d, new %d)", sawOld, sawNew)
	}
}

func mrand(n int64) int64 {
	var b [8]byte
	rand.Read(b[:])
	v := int64(0)
	for _, x := range b {
		v = v<<8 | int64(x)
	}
	if v < 0 {
		v = -v
	}
	if n <= 0 {
		return 0
	}
	return v % n
}

// TestRollback runs a real process in edged's place: a configuration it cannot run with (its
// port is taken) is rolled back to the last good one, which it then runs again; the failed
// version is not retried; a change that edged can apply live is activated as live.
func TestRollback(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	a := newApplier(t, key)
	a.mkdirs(t)
	e := &edgedProcess{t: t, configPath: a.ConfigPath}
	defer e.stop()
	a.Hooks, a.ReadyTimeout = e.hooks(), 5*time.Second
	ctx := context.Background()

	good := freePort(t)
	if _, err := a.Apply(ctx, mkBundle(t, key, testDevice, 1, cfgYAML(1000, good))); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	goodFile, _ := os.ReadFile(a.ConfigPath)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = a.Apply(ctx, mkBundle(t, key, testDevice, 2, cfgYAML(1000, busy.Addr().String())))
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("version 2 on a taken port: %v, want ErrNotReady", err)
	}
	t.Logf("refused and rolled back: %v", err)
	if now, _ := os.ReadFile(a.ConfigPath); !bytes.Equal(now, goodFile) {
		t.Fatalf("configuration after rollback is not the last good one:\n%s", now)
	}
	resp, err := http.Get("http://" + good + "/healthz")
	if err != nil {
		t.Fatalf("edged is not running with the last good configuration: %v", err)
	}
	resp.Body.Close()
	if !strings.Contains(a.LastError(), "did not become ready") {
		t.Fatalf("last error %q", a.LastError())
	}
	if _, err := a.Apply(ctx, mkBundle(t, key, testDevice, 2, cfgYAML(1000, busy.Addr().String()))); !errors.Is(err, bundle.ErrNotNewer) {
		t.Fatalf("the failed version again: %v", err)
	}

	port3 := freePort(t)
	if _, err := a.Apply(ctx, mkBundle(t, key, testDevice, 3, cfgYAML(1000, port3))); err != nil {
		t.Fatalf("version 3: %v", err)
	}
	// A viewer's connection to edged stays open across a live change: edged is reloaded, not
	// restarted (same process, same connection, new bitrate).
	call, err := net.Dial("tcp", port3)
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	before := request(t, call)
	if _, err := a.Apply(ctx, mkBundle(t, key, testDevice, 4, cfgYAML(3000, port3))); err != nil {
		t.Fatalf("version 4: %v", err)
	}
	after := request(t, call)
	if pid := strings.Fields(before)[1]; !strings.Contains(after, pid) || !strings.Contains(after, "bitrate=3000") {
		t.Fatalf("live change: before %q, after %q on the same connection", before, after)
	}
	if want := []bool{false, false, false, false, true}; fmt.Sprint(e.activates) != fmt.Sprint(want) {
		t.Fatalf("activations (live?) %v, want %v", e.activates, want)
	}
	if a.LastError() != "" {
		t.Fatalf("last error after a good apply: %q", a.LastError())
	}
}

// request sends GET / on an open connection and returns the body's line.
func request(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: edged\r\n\r\n")); err != nil {
		t.Fatalf("the call's connection was dropped: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the call's connection was dropped: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(body)
}

// TestRollbackToDefaults: when the very first configuration fails, edged gets a file holding
// its defaults (a missing file would stop it), which edged's loader accepts.
func TestRollbackToDefaults(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	a := newApplier(t, key)
	a.mkdirs(t)
	a.Hooks = Hooks{Ready: func(ctx context.Context, cfg config.Config) error {
		if cfg.Encoder.BitrateKbps == 1234 {
			return errors.New("camera not found")
		}
		return nil
	}}
	_, err := a.Apply(context.Background(), mkBundle(t, key, testDevice, 1, cfgYAML(1234, ":8080")))
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("apply: %v", err)
	}
	cfg, err := config.Load(a.ConfigPath, nil)
	if err != nil || cfg.Validate() != nil || cfg.Encoder.BitrateKbps != config.Default().Encoder.BitrateKbps {
		t.Fatalf("after rollback: %+v, %v", cfg.Encoder, err)
	}
	if cur, _ := a.Current(); cur.Version != 0 {
		t.Fatalf("version in force %d", cur.Version)
	}
}
