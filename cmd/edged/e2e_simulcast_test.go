//go:build e2e && cgo

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/sdp/v3"

	"github.com/edgeflux/edge/internal/token"
)

// whipPublishSimulcast publishes the fake camera at 1280x720 over WHIP as VP8 simulcast:
// rids q, h, f at quarter, half and full size. Resolution is kept however loaded the machine
// is, so each layer stays the size its rid says.
const whipPublishSimulcast = `(async (url, token) => {
	const stream = await navigator.mediaDevices.getUserMedia({video: {width: {exact: 1280}, height: {exact: 720}, frameRate: {max: 15}}});
	const pc = new RTCPeerConnection();
	const tr = pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendonly', streams: [stream], sendEncodings: [
		{rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 200000},
		{rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000},
		{rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1200000}]});
	tr.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter(c => /^video\/(VP8|rtx)$/i.test(c.mimeType)));
	const params = tr.sender.getParameters();
	params.degradationPreference = 'maintain-resolution';
	await tr.sender.setParameters(params);
	await pc.setLocalDescription(await pc.createOffer());
	await new Promise(done => {
		if (pc.iceGatheringState === 'complete') return done();
		pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
		setTimeout(done, 3000);
	});
	const res = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token}, body: pc.localDescription.sdp});
	const body = await res.text();
	if (res.status !== 201) throw new Error('WHIP ' + res.status + ': ' + body);
	await pc.setRemoteDescription({type: 'answer', sdp: body});
	window.pc = pc;
	return 'ok';
})`

// whepView receives a participant's tracks over WHEP and plays the video in a <video>, so
// Chromium decodes every frame. It also captures the fake microphone: Chromium tells a page
// its decoderImplementation only while the page captures.
const whepView = `(async (url, token) => {
	window.capture = await navigator.mediaDevices.getUserMedia({audio: true});
	const pc = new RTCPeerConnection();
	pc.addTransceiver('video', {direction: 'recvonly'});
	const video = document.createElement('video');
	video.muted = true; video.autoplay = true; video.playsInline = true;
	document.body.appendChild(video);
	pc.ontrack = e => { video.srcObject = new MediaStream([e.track]); video.play().catch(() => {}); };
	await pc.setLocalDescription(await pc.createOffer());
	await new Promise(done => {
		if (pc.iceGatheringState === 'complete') return done();
		pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
		setTimeout(done, 3000);
	});
	const res = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token}, body: pc.localDescription.sdp});
	const body = await res.text();
	if (res.status !== 201) throw new Error('WHEP ' + res.status + ': ' + body);
	window.answer = body;
	await pc.setRemoteDescription({type: 'answer', sdp: body});
	window.pc = pc;
	return 'ok';
})`

// readReceiver reads window.pc's received video from getStats, and the addresses of the
// candidate pair in use.
const readReceiver = `(async () => {
	const out = {streams: 0};
	if (!window.pc) return JSON.stringify(out);
	const stats = await window.pc.getStats();
	let pairId = '';
	stats.forEach(r => {
		if (r.type === 'inbound-rtp' && r.kind === 'video') {
			out.streams++;
			Object.assign(out, {ssrc: r.ssrc, framesDecoded: r.framesDecoded || 0, keyFramesDecoded: r.keyFramesDecoded || 0,
				frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0, freezeCount: r.freezeCount || 0,
				freezeSeconds: r.totalFreezesDuration || 0, framesDropped: r.framesDropped || 0, pliCount: r.pliCount || 0,
				nackCount: r.nackCount || 0, packetsLost: r.packetsLost || 0, bytesReceived: r.bytesReceived || 0,
				decoder: r.decoderImplementation || '', codec: (stats.get(r.codecId) || {}).mimeType || ''});
		}
		if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
	});
	const pair = stats.get(pairId);
	if (pair) {
		out.local = (stats.get(pair.localCandidateId) || {}).address || '';
		out.remote = (stats.get(pair.remoteCandidateId) || {}).address || '';
	}
	return JSON.stringify(out);
})()`

// readSender reads the publisher's layers from getStats.
const readSender = `(async () => {
	const out = [];
	if (!window.pc) return JSON.stringify(out);
	(await window.pc.getStats()).forEach(r => {
		if (r.type === 'outbound-rtp' && r.kind === 'video')
			out.push({rid: r.rid || '', width: r.frameWidth || 0, height: r.frameHeight || 0, framesSent: r.framesSent || 0,
				limit: r.qualityLimitationReason || '', active: r.active !== false});
	});
	out.sort((a, b) => a.rid.localeCompare(b.rid));
	return JSON.stringify(out);
})()`

type receiverStats struct {
	Streams          int     `json:"streams"`
	SSRC             uint32  `json:"ssrc"`
	FramesDecoded    int     `json:"framesDecoded"`
	KeyFramesDecoded int     `json:"keyFramesDecoded"`
	FrameWidth       int     `json:"frameWidth"`
	FrameHeight      int     `json:"frameHeight"`
	FreezeCount      int     `json:"freezeCount"`
	FreezeSeconds    float64 `json:"freezeSeconds"`
	FramesDropped    int     `json:"framesDropped"`
	PLICount         int     `json:"pliCount"`
	NackCount        int     `json:"nackCount"`
	PacketsLost      int     `json:"packetsLost"`
	BytesReceived    int64   `json:"bytesReceived"`
	Decoder          string  `json:"decoder"`
	Codec            string  `json:"codec"`
	Local            string  `json:"local"`
	Remote           string  `json:"remote"`
}

type senderLayer struct {
	RID        string `json:"rid"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	FramesSent int    `json:"framesSent"`
	Limit      string `json:"limit"`
	Active     bool   `json:"active"`
}

func evalJSON[T any](ctx context.Context, expr string) (T, error) {
	var v T
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return v, err
	}
	return v, json.Unmarshal([]byte(raw), &v)
}

// startPeer runs one of the scripts above with the endpoint and token, failing the test with
// the script's error.
func startPeer(t *testing.T, ctx context.Context, page, script, endpoint, tok string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	expr := fmt.Sprintf("%s(%q, %q)", script, endpoint, tok)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatalf("peer script at %s: %v", endpoint, err)
	}
}

// decoderWatch follows one subscriber's getStats and records anything that would mean its
// decoder was reset: frames decoded going back, another decoder, another stream.
type decoderWatch struct {
	name        string
	first, last receiverStats
	resets      []string
	widths      []string // "t=12.5s 320" each time the decoded width changes
}

func (w *decoderWatch) see(at time.Duration, s receiverStats) {
	if s.Streams == 0 || s.FramesDecoded == 0 {
		return
	}
	if w.first.FramesDecoded == 0 {
		w.first = s
	} else {
		switch {
		case s.Streams != 1:
			w.resets = append(w.resets, fmt.Sprintf("%v: %d video streams", at, s.Streams))
		case s.SSRC != w.last.SSRC:
			w.resets = append(w.resets, fmt.Sprintf("%v: SSRC %d -> %d", at, w.last.SSRC, s.SSRC))
		case s.FramesDecoded < w.last.FramesDecoded:
			w.resets = append(w.resets, fmt.Sprintf("%v: framesDecoded %d -> %d", at, w.last.FramesDecoded, s.FramesDecoded))
		case s.Decoder != w.first.Decoder && s.Decoder != "":
			w.resets = append(w.resets, fmt.Sprintf("%v: decoder %q -> %q", at, w.first.Decoder, s.Decoder))
		}
	}
	if s.FrameWidth != w.last.FrameWidth {
		w.widths = append(w.widths, fmt.Sprintf("%.1fs:%d", at.Seconds(), s.FrameWidth))
	}
	w.last = s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// noiseClip writes a one-second 1280x720 15 fps Y4M clip of flat 16x16 blocks of random
// grey, new in every frame, for Chromium's fake camera. Unlike Chromium's own nearly still
// test pattern it costs bits: the medium layer runs at 370 to 520 kbit/s, so it cannot fit a
// 300 kbit/s link, as it could with the test pattern (270 kbit/s). The low layer, where the
// blocks are 4x4 pixels, stays under its 200 kbit/s by sending only 3 to 5 frames a second.
func noiseClip(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "noise-1280x720.y4m")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "YUV4MPEG2 W1280 H720 F15:1 Ip A1:1 C420jpeg\n")
	rng := rand.New(rand.NewPCG(1, 2))
	luma := make([]byte, 1280*720)
	chroma := make([]byte, 1280*720/2)
	for i := range chroma {
		chroma[i] = 128
	}
	for range 15 {
		for by := 0; by < 720; by += 16 { // flat 16x16 blocks: costly in bits, cheap to encode
			for bx := 0; bx < 1280; bx += 16 {
				v := byte(rng.Uint32())
				for y := by; y < by+16; y++ {
					row := luma[y*1280+bx : y*1280+bx+16]
					for i := range row {
						row[i] = v
					}
				}
			}
		}
		w.WriteString("FRAME\n")
		w.Write(luma)
		w.Write(chroma)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestE2ESimulcastLimitedLink: Chromium publishes VP8 simulcast (q, h, f of a 1280x720 fake
// camera) over WHIP; two Chromium subscribers watch over WHEP, each in its own network
// namespace, one behind a 300 kbit/s link. The SFU, steered by each subscriber's REMB,
// gives the limited one the low layer and the other the high one; when the limit is lifted
// the first climbs back to high within 10 s, and its decoder never restarts.
func TestE2ESimulcastLimitedLink(t *testing.T) {
	needNetns(t)
	removeStaleNetns()
	pubNS, limNS, freeNS := newNetns(t, 0), newNetns(t, 1), newNetns(t, 2)
	d := startDaemon(t,
		"EDGED_HTTP_LISTEN="+pubNS.hostIP+":0",
		"EDGED_WEBRTC_INTERFACES="+strings.Join([]string{pubNS.hostIf, limNS.hostIf, freeNS.hostIf}, ","),
		"EDGED_WEBRTC_INCLUDE_LOOPBACK=false",
		"EDGED_CAMERA_WIDTH=320", "EDGED_CAMERA_HEIGHT=240", "EDGED_CAMERA_FPS=10", "EDGED_ENCODER_LAYERS=1",
	)
	now := time.Now()
	pubToken, err := token.Mint([]byte(testSecret), token.Claims{Identity: "simulcaster", Room: "main",
		Grants: token.Grants{Publish: true}, IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	page := d.url + "/e2e-blank" // any page of edged's origin: the scripts are ours, not edge/web's

	pub := browserIn(t, pubNS,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-video-capture", noiseClip(t)),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", d.url)) // getUserMedia on plain http
	startPeer(t, pub, page, whipPublishSimulcast, d.url+"/whip/main", pubToken)

	// Wait for the three layers to reach the SFU, the top one near its rate (the publisher's
	// own bandwidth estimate ramps up first), before anyone subscribes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ls := layerSubscribers(t, d, "main", "simulcaster")
		if ls["q_kbps"] > 0 && ls["h_kbps"] > 0 && ls["f_kbps"] >= 600 {
			t.Logf("publisher's layers at the SFU: q %d, h %d, f %d kbit/s", ls["q_kbps"], ls["h_kbps"], ls["f_kbps"])
			break
		}
		if time.Now().After(deadline) {
			s, _ := evalJSON[[]senderLayer](pub, readSender)
			t.Fatalf("the SFU did not receive three layers, the top one at 600 kbit/s or more, in 30 s: %v; publisher says %+v\n%s", ls, s, d.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}

	limNS.limit(t, 300)
	capture := []chromedp.ExecAllocatorOption{ // the fake microphone, see whepView
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", d.url),
	}
	lim, free := browserIn(t, limNS, capture...), browserIn(t, freeNS, capture...)
	whep := d.url + "/whep/main/simulcaster"
	startPeer(t, lim, page, whepView, whep, testToken)
	startPeer(t, free, page, whepView, whep, testToken)

	// The SFU's answer negotiates transport-wide congestion control: the layer choice
	// follows the SFU's own send-side estimate of each subscriber's link.
	if answer, err := chromedp.Run(lim, chromedp.Evaluate[string]("window.answer")); err != nil ||
		!strings.Contains(answer, "transport-cc") || !strings.Contains(answer, sdp.TransportCCURI) {
		t.Errorf("WHEP answer (err %v) does not negotiate transport-wide congestion control:\n%s", err, answer)
	}

	begin := time.Now()
	limW, freeW := &decoderWatch{name: "limited"}, &decoderWatch{name: "unlimited"}
	var limTx int64
	sample := func() (receiverStats, receiverStats, map[string]int) {
		ls, err := evalJSON[receiverStats](lim, readReceiver)
		if err != nil {
			t.Fatalf("limited subscriber's stats: %v", err)
		}
		fs, err := evalJSON[receiverStats](free, readReceiver)
		if err != nil {
			t.Fatalf("unlimited subscriber's stats: %v", err)
		}
		at := time.Since(begin)
		limW.see(at, ls)
		freeW.see(at, fs)
		layers := layerSubscribers(t, d, "main", "simulcaster")
		tx := limNS.hostTxBytes()
		t.Logf("t=%5.1fs limited %4dx%-4d dec %4d key %2d frz %d pli %2d lost %3d | unlimited %4dx%-4d dec %4d key %2d frz %d | SFU subs q%d h%d f%d | veth %4.0f kbit/s, drops %s | SFU estimates %s",
			at.Seconds(), ls.FrameWidth, ls.FrameHeight, ls.FramesDecoded, ls.KeyFramesDecoded, ls.FreezeCount, ls.PLICount, ls.PacketsLost,
			fs.FrameWidth, fs.FrameHeight, fs.FramesDecoded, fs.KeyFramesDecoded, fs.FreezeCount,
			layers["q"], layers["h"], layers["f"], float64(tx-limTx)*8/1000, limNS.tcDrops(), viewerEstimates(t, d))
		limTx = tx
		return ls, fs, layers
	}

	// Phase 1: limited. Over 10 s the SFU keeps the limited subscriber on the low layer most
	// of the time (it offers it the medium layer on trial every few seconds: how a
	// REMB-only subscriber finds out its link got better), its browser shows low at least
	// 4 s of the 10 and never high; the unlimited one shows high at least 8 s.
	type seen struct {
		lim, free int
		sfuLow    bool
	}
	var window []seen
	var settledAt time.Duration
	for deadline := time.Now().Add(45 * time.Second); ; {
		time.Sleep(time.Second)
		ls, fs, layers := sample()
		window = append(window, seen{ls.FrameWidth, fs.FrameWidth, layers["q"] >= 1})
		if len(window) > 10 {
			window = window[1:]
		}
		onLow, decodedLow, limHigh, high := 0, 0, 0, 0
		for _, w := range window {
			onLow += b2i(w.sfuLow)
			decodedLow += b2i(w.lim == 320)
			limHigh += b2i(w.lim == 1280)
			high += b2i(w.free == 1280)
		}
		if len(window) == 10 && onLow >= 6 && decodedLow >= 4 && limHigh == 0 && high >= 8 {
			settledAt = time.Since(begin)
			t.Logf("over the last 10 s: the SFU had the limited subscriber on low %d s, its browser showed low %d s; the unlimited one showed high %d s",
				onLow, decodedLow, high)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in 45 s on a 300 kbit/s link the subscribers did not spend 10 s mostly on low (320 wide, never 1280) and high (1280): widths %v, SFU %v\n%s",
				window, layers, d.stderr)
		}
	}
	limited := limW.last
	if !strings.HasPrefix(limited.Local, limNS.nsIP) && limited.Local != limNS.nsIP {
		t.Errorf("limited subscriber's media path %s <- %s; want its veth address %s", limited.Local, limited.Remote, limNS.nsIP)
	}
	t.Logf("settled %.1fs after subscribing: limited on %dx%d over %s <- %s (%s, %s), unlimited on %dx%d",
		settledAt.Seconds(), limited.FrameWidth, limited.FrameHeight, limited.Local, limited.Remote, limited.Codec, limited.Decoder,
		freeW.last.FrameWidth, freeW.last.FrameHeight)

	// Phase 2: the limit goes; the limited subscriber must reach the high layer within 10 s.
	limNS.unlimit(t)
	lifted := time.Now()
	var climbed time.Duration
	before := limW.last
	for climbed == 0 {
		time.Sleep(500 * time.Millisecond)
		ls, _, layers := sample()
		if ls.FrameWidth == 1280 && layers["f"] == 2 {
			climbed = time.Since(lifted)
		} else if time.Since(lifted) > 10*time.Second {
			t.Fatalf("10 s after the limit was lifted the subscriber still decodes %dx%d (SFU %v); want 1280x720. Widths: %v\n%s",
				ls.FrameWidth, ls.FrameHeight, layers, limW.widths, d.stderr)
		}
	}
	// A few more seconds on high: it must stay there and keep decoding.
	for range 3 {
		time.Sleep(time.Second)
		sample()
	}
	after := limW.last
	t.Logf("climbed to high %.1fs after the limit was lifted; then %dx%d", climbed.Seconds(), after.FrameWidth, after.FrameHeight)
	t.Logf("limited subscriber: widths over time %v; keyframes decoded %d (%d during the climb), freezes %d (%d during the climb, %.2f s frozen in all), frames dropped %d, PLIs sent %d",
		limW.widths, after.KeyFramesDecoded, after.KeyFramesDecoded-before.KeyFramesDecoded, after.FreezeCount,
		after.FreezeCount-before.FreezeCount, after.FreezeSeconds, after.FramesDropped, after.PLICount)
	t.Logf("unlimited subscriber: widths over time %v; keyframes %d, freezes %d", freeW.widths, freeW.last.KeyFramesDecoded, freeW.last.FreezeCount)
	if s, err := evalJSON[[]senderLayer](pub, readSender); err == nil {
		t.Logf("publisher's layers at the end: %+v", s)
	}
	for _, w := range []*decoderWatch{limW, freeW} {
		if len(w.resets) > 0 {
			t.Errorf("%s subscriber's decoder restarted: %v", w.name, w.resets)
		}
	}
	if after.FramesDecoded <= before.FramesDecoded {
		t.Errorf("limited subscriber decoded nothing after the climb: %d -> %d frames", before.FramesDecoded, after.FramesDecoded)
	}
	if after.FrameWidth != 1280 {
		t.Errorf("limited subscriber fell back to %dx%d after reaching high on a free link", after.FrameWidth, after.FrameHeight)
	}
}
