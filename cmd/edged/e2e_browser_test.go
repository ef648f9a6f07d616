//go:build e2e && cgo

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts Debian's headless Chromium with every packet kept on loopback: no mDNS
// host-candidate hiding, no lookups of Google hosts, no background traffic.
func browser(t *testing.T) context.Context {
	t.Helper()
	ctx, _ := newBrowser(t)
	return ctx
}

// chromiumOptions are the flags every test browser runs with: headless, a profile of its own,
// no network but the hosts resolverRules leaves (the machine's network is closed), real
// local candidates, autoplay.
func chromiumOptions(t *testing.T, path, resolverRules string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("host-resolver-rules", resolverRules),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	}
}

// newBrowser starts a Chromium of its own (its own profile), with extra flags; close ends it
// before the test does (it is also ended at cleanup).
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) (ctx context.Context, close func()) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is needed for the browser tests (make test installs it): ", err)
	}
	opts := append(chromiumOptions(t, path, "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, extra...)...)
	ctx, cancel := chromedp.NewContext(actx)
	var once sync.Once
	close = func() { once.Do(func() { cancel(); cancelAlloc() }) }
	t.Cleanup(close)
	if _, err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, close
}

// inboundVideo is what getStats says about the received video.
type inboundVideo struct {
	FramesDecoded int `json:"framesDecoded"`
	FrameWidth    int `json:"frameWidth"`
	FrameHeight   int `json:"frameHeight"`
}

// readInboundVideo reads the appliance camera's video as the meeting page receives it.
const readInboundVideo = `(async () => {
	const e = window.edge;
	if (!e || !e.stats) return JSON.stringify({});
	const v = (await e.stats()).find(s => s.participant === 'camera' && s.kind === 'video') || {};
	return JSON.stringify({framesDecoded: v.framesDecoded || 0, frameWidth: v.frameWidth || 0, frameHeight: v.frameHeight || 0});
})()`

// waitFor polls expr in the page until ok says yes or the timeout passes.
func waitFor[T any](t *testing.T, ctx context.Context, expr string, timeout time.Duration, ok func(T) bool) T {
	t.Helper()
	var last T
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
		if err == nil && json.Unmarshal([]byte(raw), &last) == nil && ok(last) {
			return last
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %v; last value %+v", timeout, last)
	return last
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("EDGE_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
}

// TestE2EBrowserPlaysTheStream opens the page in Chromium and checks, from the browser's own
// getStats, that it decodes more than 100 frames and reaches the configured resolution.
func TestE2EBrowserPlaysTheStream(t *testing.T) {
	d := startDaemon(t) // defaults: 1280x720 at 30 fps
	ctx := browser(t)
	if _, err := chromedp.Run(ctx, chromedp.Navigate(d.url+"/#token="+testToken)); err != nil {
		t.Fatal(err)
	}
	// The camera has up to three layers; the page asks for the best (auto) and climbs to the
	// full size as its bandwidth estimate grows.
	v := waitFor(t, ctx, readInboundVideo, 30*time.Second, func(v inboundVideo) bool { return v.FramesDecoded > 100 && v.FrameWidth == 1280 })
	screenshot(t, ctx, "live")
	t.Logf("Chromium decoded %d frames at %dx%d", v.FramesDecoded, v.FrameWidth, v.FrameHeight)
	if v.FrameWidth != 1280 || v.FrameHeight != 720 {
		t.Errorf("decoded at %dx%d; want the configured 1280x720", v.FrameWidth, v.FrameHeight)
	}
	if state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.edge.state`)); err != nil || state != "live" {
		t.Errorf("page state %q (%v); want live", state, err)
	}
}

// TestE2EBrowserSaysWhenTokenIsWrong: the page asks for a token instead of showing nothing.
func TestE2EBrowserSaysWhenTokenIsWrong(t *testing.T) {
	d := startDaemon(t)
	ctx := browser(t)
	if _, err := chromedp.Run(ctx, chromedp.Navigate(d.url+"/#token=not-the-token-000000")); err != nil {
		t.Fatal(err)
	}
	type page struct {
		State     string `json:"state"`
		FormShown bool   `json:"formShown"`
		Message   string `json:"message"`
	}
	const read = `JSON.stringify({state: window.edge && window.edge.state,
		formShown: !!document.querySelector('#token-form') && !document.querySelector('#token-form').hidden,
		message: (document.querySelector('#token-message') || {}).textContent || ''})`
	p := waitFor(t, ctx, read, 15*time.Second, func(p page) bool { return p.State == "unauthorized" })
	screenshot(t, ctx, "unauthorized")
	if !p.FormShown || p.Message == "" {
		t.Errorf("wrong token: form shown %v, message %q; want the token form with a message", p.FormShown, p.Message)
	}
}

// TestE2EBrowserSaysWhenStreamIsDown: a camera that is not there makes the page say so: the
// page (with an admin token, as on the appliance's own screen) reads /api/status.
func TestE2EBrowserSaysWhenStreamIsDown(t *testing.T) {
	d := startDaemon(t, "EDGED_CAMERA_DEVICE=/dev/video-missing")
	ctx := browser(t)
	if _, err := chromedp.Run(ctx, chromedp.Navigate(d.url+"/#token="+testToken)); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Camera string `json:"camera"`
		Banner string `json:"banner"`
		Notice string `json:"notice"`
	}
	const read = `JSON.stringify({camera: window.edge && window.edge.camera.state,
		banner: (document.querySelector('#banner') || {}).textContent || '',
		notice: (document.querySelector('[data-participant="camera"] .notice') || {}).textContent || ''})`
	p := waitFor(t, ctx, read, 20*time.Second, func(p page) bool { return p.Camera == "down" })
	screenshot(t, ctx, "down")
	t.Logf("banner: %q; camera tile: %q", p.Banner, p.Notice)
	if p.Banner == "" || p.Notice == "" {
		t.Error("stream down, but the page shows no banner or no notice on the camera's tile")
	}
}

// TestE2EBrowserKioskPlaysWithoutAToken is `make run` and the appliance's own screen: the page
// opened on this machine with no token gets one from the page itself and plays the camera
// with no click. It stays view only although the browser has a camera and a microphone: the
// appliance's camera is already in the room.
func TestE2EBrowserKioskPlaysWithoutAToken(t *testing.T) {
	d := startDaemon(t, "EDGED_AUTH_TRUST_LOOPBACK=true", "EDGED_CAMERA_WIDTH=640", "EDGED_CAMERA_HEIGHT=360")
	ctx, _ := newBrowser(t,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true))
	if _, err := chromedp.Run(ctx, chromedp.Navigate(d.url+"/")); err != nil {
		t.Fatal(err)
	}
	v := waitFor(t, ctx, readInboundVideo, 20*time.Second, func(v inboundVideo) bool { return v.FramesDecoded > 30 })
	t.Logf("the kiosk page decoded %d frames at %dx%d", v.FramesDecoded, v.FrameWidth, v.FrameHeight)
	type page struct {
		State      string `json:"state"`
		ViewOnly   string `json:"viewOnly"`
		Publishing bool   `json:"publishing"`
	}
	p := waitFor(t, ctx, `JSON.stringify({state: edge.state, viewOnly: edge.viewOnly, publishing: !!edge.pub})`, 5*time.Second,
		func(p page) bool { return p.State == "live" })
	if p.Publishing || p.ViewOnly == "" {
		t.Errorf("kiosk page: publishing %v, view only %q; want view only, with the reason", p.Publishing, p.ViewOnly)
	}
}
