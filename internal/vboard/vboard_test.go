//go:build vboard

package vboard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/vboard"
)

// TestVBoardX86 boots the x86-64 test kernel (vivid, vicodec, vim2m, gpio-sim) and runs the
// TestVBoard* tests of every package with vboardguest test files, one subtest per package.
// EDGE_VBOARD_PKGS (package patterns) and EDGE_VBOARD_RUN (a -test.run pattern) narrow it.
func TestVBoardX86(t *testing.T) {
	ctx := t.Context()
	root, _ := setup(t)
	cache, kernel, rootfs := x86Base(t)
	patterns := strings.Fields(os.Getenv("EDGE_VBOARD_PKGS"))
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	pkgs, err := vboard.GuestPackages(ctx, root, patterns...)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) == 0 {
		t.Fatalf("no package in %v has %s test files", patterns, vboard.GuestTag)
	}
	run := "^TestVBoard"
	if r := os.Getenv("EDGE_VBOARD_RUN"); r != "" {
		run = r
	}

	work := t.TempDir()
	buildErrs := map[string]error{}
	var steps []vboard.Step
	for _, p := range pkgs {
		bin := filepath.Join(work, strings.ReplaceAll(p.Rel, "/", "_")+".test")
		if err := vboard.BuildGuestTest(ctx, root, p, "x86_64", bin); err != nil {
			buildErrs[p.Rel] = err
			continue
		}
		step, err := vboard.AddGuestTest(rootfs, p, "x86_64", bin, run)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, step)
	}
	guest := boot(t, rootfs, steps, vboard.Guest{
		Arch:       "x86_64",
		Kernel:     kernel,
		Timeout:    guestTimeout(t, 12*time.Minute),
		ConsoleLog: consoleLog(cache, "x86_64"),
	})
	waitErr := guest.Wait()

	results, done := vboard.Results(guest.Lines())
	for _, p := range pkgs {
		t.Run(p.Rel, func(t *testing.T) {
			if err := buildErrs[p.Rel]; err != nil {
				t.Fatal(err)
			}
			r := result(t, results, p.Rel, guest)
			if strings.Contains(r.Output, "testing: warning: no tests to run") {
				if run == "^TestVBoard" {
					t.Fatalf("%s has %s test files but no TestVBoard* test", p.Rel, vboard.GuestTag)
				}
				t.Skipf("no test matches %s", run)
			}
		})
	}
	guestDone(t, waitErr, done, guest)
}

// TestVBoardX86HostForward checks Guest.HostFwd: a TCP port on the host's loopback reaches
// a server in the guest (busybox nc on eth0, QEMU user networking with restrict=on).
func TestVBoardX86HostForward(t *testing.T) {
	cache, kernel, rootfs := x86Base(t)
	const greeting = "hello from the guest"
	steps := []vboard.Step{{Name: "nc", Args: []string{"sh", "-c", "echo '" + greeting + "' | timeout 120 nc -l -p 8080"}}}
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port
	if err != nil {
		t.Fatal(err)
	}
	hostAddr := l.Addr().String()
	l.Close()
	guest := boot(t, rootfs, steps, vboard.Guest{
		Arch:       "x86_64",
		Kernel:     kernel,
		Timeout:    guestTimeout(t, 3*time.Minute),
		HostFwd:    []vboard.Forward{{Host: hostAddr, GuestPort: 8080}},
		ConsoleLog: consoleLog(cache, "x86_64"),
	})
	if err := guest.WaitFor(t.Context(), vboard.MarkerBegin+"nc", 1); err != nil {
		t.Fatalf("%v; console tail:\n%s", err, guest.Tail(40))
	}
	// Until nc listens, QEMU accepts the connection and closes it at once: try again.
	var got string
	for deadline := time.Now().Add(time.Minute); got == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", hostAddr, 5*time.Second)
		if err != nil {
			continue
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(conn)
		conn.Close()
		got = strings.TrimSpace(string(b))
	}
	if got != greeting {
		t.Errorf("read %q through %s, want %q", got, hostAddr, greeting)
	}
	if err := guest.Wait(); err != nil {
		t.Errorf("guest: %v; console tail:\n%s", err, guest.Tail(40))
	}
}

// TestVBoardX86Timeout checks that a hung guest is killed at Guest.Timeout, with an error
// that says so and the hung step left open.
func TestVBoardX86Timeout(t *testing.T) {
	cache, kernel, rootfs := x86Base(t)
	steps := []vboard.Step{{Name: "hang", Args: []string{"sh", "-c", "echo hanging; sleep 600"}}}
	guest := boot(t, rootfs, steps, vboard.Guest{
		Arch:       "x86_64",
		Kernel:     kernel,
		Timeout:    20 * time.Second,
		ConsoleLog: consoleLog(cache, "x86_64"),
	})
	err := guest.Wait()
	if !errors.Is(err, vboard.ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout; console tail:\n%s", err, guest.Tail(20))
	}
	results, done := vboard.Results(guest.Lines())
	if r, ok := vboard.Find(results, "hang"); !ok || r.Ended || !strings.Contains(r.Output, "hanging") || done {
		t.Errorf("results %+v (done %v), want the step hang begun with its output and not ended", results, done)
	}
}

// TestVBoardARM64 boots Debian's arm64 kernel on QEMU's virt board (cortex-a57) with Debian's
// arm64 busybox. It runs the daemon as shipped (cgo, dynamically linked, cross-built like
// `make build-arm64`) with -version and -check-config, then the power-button tests: each
// prints VBOARD-READY-FOR-BUTTON, and the host then presses the board's power button over
// QMP (system_powerdown), which toggles PL061 line 3.
func TestVBoardARM64(t *testing.T) {
	ctx := t.Context()
	root, cache := setup(t)
	kernel, err := vboard.DebianKernel(ctx, cache, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := vboard.DebianFile(ctx, cache, "busybox-static", "arm64", "./bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	rootfs, err := vboard.BaseInitramfs(busybox, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()

	edged := filepath.Join(work, "edged")
	if err := buildEdgedARM64(ctx, root, edged); err != nil {
		t.Fatal(err)
	}
	if err := rootfs.AddELF("/bin/edged", edged, vboard.LibDir("arm64")); err != nil {
		t.Fatal(err)
	}
	steps := []vboard.Step{
		{Name: "edged-version", Args: []string{"/bin/edged", "-version"}},
		{Name: "edged-check-config", Args: []string{"/bin/edged", "-check-config"}},
		{Name: "edged-button", Args: []string{"/bin/sh", "-c", edgedButtonScript}},
	}

	buttons := []struct{ pkg, test string }{
		{"internal/vboard/guest", "TestVBoardPL061PowerButton"},
		{"device/gpio", "TestVBoardPL061Button"},
	}
	pkgs, err := vboard.GuestPackages(ctx, root, "./internal/vboard/guest", "./device/gpio")
	if err != nil {
		t.Fatal(err)
	}
	missing := map[string]bool{}
	buildErrs := map[string]error{}
	for _, b := range buttons {
		p, ok := findPackage(pkgs, b.pkg)
		if !ok {
			missing[b.pkg] = true
			continue
		}
		bin := filepath.Join(work, strings.ReplaceAll(p.Rel, "/", "_")+".test")
		if err := vboard.BuildGuestTest(ctx, root, p, "arm64", bin); err != nil {
			buildErrs[p.Rel] = err
			continue
		}
		step, err := vboard.AddGuestTest(rootfs, p, "arm64", bin, "^"+b.test+"$")
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, step)
	}

	guest := boot(t, rootfs, steps, vboard.Guest{
		Arch:       "arm64",
		Kernel:     kernel,
		QMP:        true,
		Timeout:    guestTimeout(t, 8*time.Minute),
		ConsoleLog: consoleLog(cache, "arm64"),
	})
	presses := make(chan int, 1)
	go func() { presses <- pressButtonWhenAsked(ctx, t, guest) }()
	waitErr := guest.Wait()
	t.Logf("pressed the power button %d times", <-presses)

	results, done := vboard.Results(guest.Lines())
	t.Run("edged", func(t *testing.T) {
		for step, want := range map[string]string{
			"edged-version": "edged vboard", "edged-check-config": "configuration OK",
			"edged-button": "msg=call joined=false", // the daemon saw the PL061 press and left the call
		} {
			if r := result(t, results, step, guest); !strings.Contains(r.Output, want) {
				t.Errorf("%s printed no %q:\n%s", step, want, r.Output)
			}
		}
	})
	for _, b := range buttons {
		t.Run(b.pkg, func(t *testing.T) {
			if missing[b.pkg] {
				t.Skipf("%s has no %s test files yet", b.pkg, vboard.GuestTag)
			}
			if err := buildErrs[b.pkg]; err != nil {
				t.Fatal(err)
			}
			if r := result(t, results, b.pkg, guest); !strings.Contains(r.Output, "--- PASS: "+b.test) {
				t.Fatalf("%s did not pass (is it there?):\n%s", b.test, r.Output)
			}
		})
	}
	guestDone(t, waitErr, done, guest)
}

// edgedButtonScript runs the shipped daemon on the arm64 board with PL061 line 3 (the power
// button) as its call button, asks the host for a press once edged serves, and passes when
// edged itself logs that it left the call.
const edgedButtonScript = `
export EDGED_AUTH_SECRET=vboard-secret-0123456789abcdefghijklmnop EDGED_CAMERA_DEVICE=synthetic \
	EDGED_CAMERA_WIDTH=320 EDGED_CAMERA_HEIGHT=240 EDGED_CAMERA_FPS=5 \
	EDGED_HTTP_LISTEN=127.0.0.1:8080 EDGED_WEBRTC_UDP_PORT=0 EDGED_WEBRTC_INTERFACES=lo \
	EDGED_WEBRTC_INCLUDE_LOOPBACK=true EDGED_WEBRTC_MDNS=false EDGED_LOG_FORMAT=text \
	EDGED_GPIO_CALL_BUTTON=gpiochip0:3 EDGED_GPIO_BUTTON_ACTIVE_LOW=false EDGED_GPIO_BUTTON_BIAS=as-is
/bin/edged >/tmp/edged.log 2>&1 &
pid=$!
wait_for() { i=0; until grep -q "$1" /tmp/edged.log; do i=$((i+1)); [ $i -gt 90 ] && return 1; sleep 1; done; }
wait_for "edged serving" && echo VBOARD-READY-FOR-BUTTON && wait_for "msg=call joined=false"
ok=$?
kill $pid; wait $pid
cat /tmp/edged.log
exit $ok
`

// x86Base builds (or reuses) the x86-64 test kernel and starts an initramfs with busybox:
// what every x86-64 guest starts from.
func x86Base(t *testing.T) (cache, kernel string, rootfs *vboard.Initramfs) {
	t.Helper()
	_, cache = setup(t)
	kernel, err := vboard.BuildKernel(t.Context(), "kernel/build.sh", lineLogger{t})
	if err != nil {
		t.Fatal(err)
	}
	rootfs, err = vboard.BaseInitramfs("/bin/busybox", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	return cache, kernel, rootfs
}

// setup returns the module root and the cache directory.
func setup(t *testing.T) (root, cache string) {
	t.Helper()
	root, err := vboard.ModuleRoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cache, err = vboard.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return root, cache
}

// boot writes /init and the initramfs and boots the guest, logging where its console goes.
func boot(t *testing.T, rootfs *vboard.Initramfs, steps []vboard.Step, g vboard.Guest) *vboard.Run {
	t.Helper()
	rootfs.File("init", 0o755, vboard.InitScript(nil, steps))
	g.Initramfs = filepath.Join(t.TempDir(), "initramfs.cpio.gz")
	if err := rootfs.WriteFile(g.Initramfs); err != nil {
		t.Fatal(err)
	}
	t.Logf("booting the %s guest (at most %v), console log: %s", g.Arch, g.Timeout, g.ConsoleLog)
	start := time.Now()
	guest, err := vboard.Boot(t.Context(), g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		guest.Close()
		t.Logf("the %s guest ran for %v", g.Arch, time.Since(start).Round(time.Second))
	})
	return guest
}

// consoleLog names a new console log, <cache>/logs/<arch>-<time>-<pid>.console.log, so that
// runs at the same time keep apart, and deletes all but the newest 20 of arch.
func consoleLog(cache, arch string) string {
	dir := filepath.Join(cache, "logs")
	old, _ := filepath.Glob(filepath.Join(dir, arch+"-*.console.log"))
	slices.Sort(old) // by time
	for len(old) >= 20 {
		os.Remove(old[0])
		old = old[1:]
	}
	return filepath.Join(dir, fmt.Sprintf("%s-%s-%d.console.log", arch, time.Now().Format("20060102-150405"), os.Getpid()))
}

// guestTimeout bounds the guest's run by max and by what is left of go test's -timeout.
func guestTimeout(t *testing.T, limit time.Duration) time.Duration {
	if d, ok := t.Deadline(); ok && time.Until(d)-time.Minute < limit {
		return max(time.Until(d)-time.Minute, time.Minute)
	}
	return limit
}

// result returns a step's outcome, or fails the test with what the console says about it.
func result(t *testing.T, results []vboard.Result, name string, guest *vboard.Run) vboard.Result {
	t.Helper()
	r, ok := vboard.Find(results, name)
	switch {
	case !ok:
		t.Fatalf("%s never started: the guest stopped before it; console tail:\n%s", name, guest.Tail(40))
	case !r.Ended:
		t.Fatalf("%s did not finish (the guest hung, crashed or was killed); its console output:\n%s", name, r.Output)
	case r.RC != 0:
		t.Fatalf("%s failed in the guest (exit status %d); its console output:\n%s", name, r.RC, r.Output)
	}
	for _, l := range strings.Split(r.Output, "\n") {
		if strings.Contains(l, "--- ") || strings.HasPrefix(l, "ok") || strings.HasPrefix(l, "PASS") {
			t.Log(l)
		}
	}
	return r
}

// guestDone fails the test if the guest did not run /init to its end and power off.
func guestDone(t *testing.T, waitErr error, done bool, guest *vboard.Run) {
	t.Helper()
	switch {
	case waitErr != nil:
		t.Errorf("guest: %v; console tail:\n%s", waitErr, guest.Tail(40))
	case !done:
		t.Errorf("guest powered off before /init printed %s; console tail:\n%s", vboard.MarkerDone, guest.Tail(40))
	}
}

// pressButtonWhenAsked presses the power button (QMP system_powerdown) each time a guest
// test prints VBOARD-READY-FOR-BUTTON, until the guest exits, and returns how many times.
func pressButtonWhenAsked(ctx context.Context, t *testing.T, guest *vboard.Run) int {
	n := 0
	for {
		if err := guest.WaitFor(ctx, vboard.MarkerReadyForButton, n+1); err != nil {
			return n
		}
		if _, err := guest.QMP().Execute(ctx, "system_powerdown", nil); err != nil {
			t.Errorf("press the power button: %v", err)
			return n
		}
		n++
	}
}

// buildEdgedARM64 cross-builds the daemon as `make build-arm64` does (cgo with Debian's
// aarch64 cross compiler), with the version "vboard".
func buildEdgedARM64(ctx context.Context, root, out string) error {
	for _, cc := range []string{"aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++"} {
		if _, err := exec.LookPath(cc); err != nil {
			return fmt.Errorf("build edged for arm64: %w (.ci/install-deps test installs it)", err)
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X main.version=vboard", "-o", out, "./cmd/edged")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH=arm64",
		"CC=aarch64-linux-gnu-gcc", "CXX=aarch64-linux-gnu-g++")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build edged for arm64: %w\n%s", err, b)
	}
	return nil
}

func findPackage(pkgs []vboard.Package, rel string) (vboard.Package, bool) {
	for _, p := range pkgs {
		if p.Rel == rel {
			return p, true
		}
	}
	return vboard.Package{}, false
}

// lineLogger logs each line written to it.
type lineLogger struct{ t *testing.T }

func (l lineLogger) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		l.t.Log(string(line))
	}
	return len(p), nil
}
