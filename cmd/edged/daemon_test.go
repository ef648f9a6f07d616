//go:build cgo

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/whepclient"
)

const testSecret = "e2e-secret-0123456789abcdefghijklmnop"

// testToken may do everything in the default room.
var testToken = operatorToken([]byte(testSecret))

// daemon is an edged started in-process on loopback, the way `edged` runs for real.
type daemon struct {
	url    string // http://127.0.0.1:port
	stop   func() time.Duration
	stderr *lockedBuffer
}

// startDaemon runs edged with loopback-only WebRTC and the synthetic camera; env adds or
// overrides EDGED_* settings.
func startDaemon(t testing.TB, env ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, &runHooks{}, env...)
}

func startDaemonWith(t testing.TB, hooks *runHooks, env ...string) *daemon {
	t.Helper()
	return startDaemonArgs(t, hooks, nil, env...)
}

// startDaemonArgs is startDaemonWith with command-line arguments.
func startDaemonArgs(t testing.TB, hooks *runHooks, args []string, env ...string) *daemon {
	t.Helper()
	environ := append([]string{
		"EDGED_AUTH_SECRET=" + testSecret,
		"EDGED_CAMERA_DEVICE=synthetic",
		"EDGED_HTTP_LISTEN=127.0.0.1:0",
		"EDGED_WEBRTC_UDP_PORT=0",
		"EDGED_WEBRTC_INTERFACES=lo",
		"EDGED_WEBRTC_INCLUDE_LOOPBACK=true",
		"EDGED_WEBRTC_MDNS=false",
		"EDGED_TURN_LISTEN=127.0.0.1:0",
		"EDGED_LOG_FORMAT=text",
	}, env...)
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	result := make(chan error, 1)
	stderr := &lockedBuffer{}
	go func() {
		hooks.started = func(a string) { addr <- a }
		result <- run(ctx, args, io.Discard, stderr, environ, hooks)
	}()
	d := &daemon{stderr: stderr}
	select {
	case a := <-addr:
		d.url = "http://" + a
	case err := <-result:
		cancel()
		t.Fatalf("edged exited at start: %v\n%s", err, stderr)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("edged did not start in 10 s\n%s", stderr)
	}
	var once sync.Once
	var took time.Duration
	d.stop = func() time.Duration {
		once.Do(func() {
			begin := time.Now()
			cancel()
			select {
			case err := <-result:
				took = time.Since(begin)
				if err != nil {
					t.Errorf("edged exited with %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("edged did not stop within 10 s of its context ending")
			}
		})
		return took
	}
	t.Cleanup(func() { d.stop() })
	return d
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (d *daemon) get(t testing.TB, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (d *daemon) post(t testing.TB, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s %s: %d", path, body, resp.StatusCode)
	}
}

func TestDaemonStreamsAndShutsDownWithin2s(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, "EDGED_CAMERA_WIDTH=640", "EDGED_CAMERA_HEIGHT=480")
	if code, body := d.get(t, "/", ""); code != 200 || !strings.Contains(body, "<video") {
		t.Fatalf("GET /: %d", code)
	}
	var packets atomic.Int64
	var firstPacket atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	joined := time.Now()
	c, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true},
		func(*rtp.Packet) {
			if packets.Add(1) == 1 {
				firstPacket.Store(int64(time.Since(joined)))
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	for packets.Load() < 100 {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d RTP packets in 10 s\n%s", packets.Load(), d.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Logf("first video packet %v after the viewer posted its offer", time.Duration(firstPacket.Load()))
	if code, body := d.get(t, "/api/status", testToken); code != 200 || !strings.Contains(body, `"live":true`) || !strings.Contains(body, `"viewers":1`) {
		t.Errorf("status while streaming to one viewer: %d %s", code, body)
	}
	// Shut down with the viewer still connected: the daemon must not wait for it.
	if took := d.stop(); took > shutdownGrace {
		t.Errorf("shutdown took %v; want under %v", took, shutdownGrace)
	}
	c.Close()
}

// fakeSystemd is the notify socket systemd gives a Type=notify service with WatchdogSec.
func fakeSystemd(t *testing.T, watchdog time.Duration) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int(watchdog.Microseconds())))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	return conn
}

// countPings reads notify messages for d and counts watchdog pings.
func countPings(conn *net.UnixConn, d time.Duration) (pings int) {
	buf := make([]byte, 4096)
	deadline := time.Now().Add(d)
	for {
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			return pings
		}
		if strings.Contains(string(buf[:n]), "WATCHDOG=1") {
			pings++
		}
	}
}

func TestDaemonTellsSystemdReadyAndPingsWatchdogWhileStreaming(t *testing.T) {
	conn := fakeSystemd(t, 600*time.Millisecond)
	d := startDaemon(t, "EDGED_CAMERA_WIDTH=320", "EDGED_CAMERA_HEIGHT=240")

	var ready, pings int
	buf := make([]byte, 4096)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && (ready == 0 || pings < 3) {
		conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		msg := string(buf[:n])
		if strings.Contains(msg, "READY=1") {
			ready++
		}
		if strings.Contains(msg, "WATCHDOG=1") {
			pings++
		}
	}
	d.stop()
	if ready != 1 || pings < 3 {
		t.Fatalf("READY sent %d times, %d watchdog pings in 3 s of streaming; want 1 and at least 3\n%s", ready, pings, d.stderr)
	}
}

// stallableSource is the test pattern with a switch that freezes it, as a wedged camera would.
type stallableSource struct {
	tp      *testpattern.Source
	stalled atomic.Bool
}

func (s *stallableSource) Run(ctx context.Context, emit func(*media.Frame)) error {
	return s.tp.Run(ctx, func(f *media.Frame) {
		for s.stalled.Load() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		emit(f)
	})
}

// TestWatchdogStopsWhenFramesStop: a stalled source stops the watchdog pings, so systemd
// restarts edged; when frames flow again, so do the pings.
func TestWatchdogStopsWhenFramesStop(t *testing.T) {
	conn := fakeSystemd(t, 300*time.Millisecond)
	tp, err := testpattern.New(testpattern.Config{Width: 320, Height: 240, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	src := &stallableSource{tp: tp}
	startDaemonWith(t, &runHooks{source: src}, "EDGED_CAMERA_WIDTH=320", "EDGED_CAMERA_HEIGHT=240")

	flowing := countPings(conn, time.Second)
	src.stalled.Store(true)
	countPings(conn, 2500*time.Millisecond) // the health check allows 2 s without a frame
	stalled := countPings(conn, 1500*time.Millisecond)
	src.stalled.Store(false)
	countPings(conn, 300*time.Millisecond)
	resumed := countPings(conn, time.Second)
	t.Logf("watchdog pings per second: %d flowing, %d stalled, %d resumed", flowing, stalled, resumed)
	if flowing < 5 || stalled != 0 || resumed < 5 {
		t.Fatalf("pings: %d while flowing, %d during a stall, %d after it; want about 10, 0, 10", flowing, stalled, resumed)
	}
}

// unpluggingSource is the test pattern that fails once, like a camera pulled out and put
// back: its first run ends with an error after `after` frames, later runs are normal.
type unpluggingSource struct {
	tp    *testpattern.Source
	after int
	runs  atomic.Int32
}

func (s *unpluggingSource) Run(ctx context.Context, emit func(*media.Frame)) error {
	if s.runs.Add(1) > 1 {
		return s.tp.Run(ctx, emit)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	s.tp.Run(ctx, func(f *media.Frame) {
		if n++; n == s.after {
			cancel()
		}
		emit(f)
	})
	return errors.New("camera unplugged")
}

// TestViewerSurvivesCameraUnplug: a viewer connected while the camera fails keeps its
// session, and pictures come back on it when the camera does.
func TestViewerSurvivesCameraUnplug(t *testing.T) {
	leakcheck.Check(t)
	tp, err := testpattern.New(testpattern.Config{Width: 320, Height: 240, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	src := &unpluggingSource{tp: tp, after: 60} // two seconds of pictures, then the unplug
	d := startDaemonWith(t, &runHooks{source: src}, "EDGED_CAMERA_WIDTH=320", "EDGED_CAMERA_HEIGHT=240")
	var last atomic.Int64 // unix nanoseconds of the newest packet
	var packets atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true},
		func(*rtp.Packet) { packets.Add(1); last.Store(time.Now().UnixNano()) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Wait for the gap: no packet for 500 ms after packets flowed.
	var gapAt time.Time
	for gapAt.IsZero() {
		if ctx.Err() != nil {
			t.Fatal("the stream never paused: the source did not fail")
		}
		time.Sleep(50 * time.Millisecond)
		if l := last.Load(); l > 0 && time.Since(time.Unix(0, l)) > 500*time.Millisecond {
			gapAt = time.Now()
		}
	}
	if code, body := d.get(t, "/api/status", testToken); code != 200 || !strings.Contains(body, "camera unplugged") {
		t.Errorf("status during the outage: %d %s; want the camera's error", code, body)
	}
	before := packets.Load()
	for packets.Load() == before {
		if ctx.Err() != nil {
			t.Fatalf("pictures did not come back on the viewer's session after the camera did")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("pictures resumed %v after the gap was seen, on the same session", time.Since(gapAt).Round(time.Millisecond))
	if st := c.PeerConnection().ConnectionState().String(); st != "connected" {
		t.Errorf("viewer connection %s after the outage; want connected", st)
	}
	if src.runs.Load() != 2 {
		t.Errorf("source ran %d times; want 2 (the failure, then the retry)", src.runs.Load())
	}
}

// TestViewerEstimateDrivesEncoderBitrate: a viewer's REMB brings the encoder's target down
// at once to what its path carries; when the viewer leaves the target climbs back slowly.
func TestViewerEstimateDrivesEncoderBitrate(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, "EDGED_CAMERA_WIDTH=320", "EDGED_CAMERA_HEIGHT=240")
	target := func() float64 {
		_, body := d.get(t, "/api/status", testToken)
		var st struct {
			TargetKbps float64 `json:"target_kbps"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("status %q: %v", body, err)
		}
		return st.TargetKbps
	}
	if got := target(); got != 2000 {
		t.Fatalf("target before any viewer: %v kbit/s; want the configured 2000", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := whepclient.Dial(ctx, whepclient.Options{URL: d.url + "/whep/camera", Token: testToken, LoopbackOnly: true},
		func(*rtp.Packet) {})
	if err != nil {
		t.Fatal(err)
	}
	var cut float64
	for cut = target(); cut > 600; cut = target() {
		if err := c.SendREMB(ctx, 600_000); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cut < 450 || cut > 600 {
		t.Errorf("target after a 600 kbit/s estimate: %v; want about 0.85 of it", cut)
	}
	c.Close()
	time.Sleep(4 * time.Second) // hold after a cut, then at most 8 % a second up
	if up := target(); up <= cut || up > cut*1.3 {
		t.Errorf("target %v kbit/s 4 s after the congested viewer left (was %v); want a slow climb", up, cut)
	}
}
