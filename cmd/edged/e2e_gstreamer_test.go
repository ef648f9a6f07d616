//go:build e2e && cgo

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/edgeflux/edge/internal/h264"
	"github.com/edgeflux/edge/internal/token"
	"github.com/edgeflux/edge/internal/whepclient"
)

// gstWHIP is a WHIP publisher built from GStreamer's webrtcbin (Debian 12's GStreamer 1.22
// has no whipsink): a live test pattern, x264 at 640x360 15 fps, constrained baseline. It does
// the WHIP exchange itself (RFC 9725: one POST of the complete offer, the answer in the 201),
// prints "published <Location>" and runs until killed.
const gstWHIP = `
import sys, urllib.request, urllib.error
import gi
gi.require_version('Gst', '1.0')
gi.require_version('GstWebRTC', '1.0')
gi.require_version('GstSdp', '1.0')
from gi.repository import Gst, GstWebRTC, GstSdp, GLib

endpoint, token = sys.argv[1], sys.argv[2]
Gst.init(None)
pipe = Gst.parse_launch(
    'webrtcbin name=w bundle-policy=max-bundle '
    'videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=15/1 ! videoconvert ! queue ! '
    'x264enc tune=zerolatency speed-preset=ultrafast bitrate=600 key-int-max=30 ! video/x-h264,profile=constrained-baseline ! '
    'rtph264pay config-interval=-1 aggregate-mode=zero-latency ! '
    'application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000 ! w.')
w = pipe.get_by_name('w')
loop = GLib.MainLoop()
status = [0]

def fail(msg):
    print('gst-whip: ' + msg, file=sys.stderr, flush=True)
    status[0] = 1
    loop.quit()

def post_offer():
    offer = w.get_property('local-description').sdp.as_text()
    print('gst-whip: offer\n' + offer, file=sys.stderr, flush=True)
    req = urllib.request.Request(endpoint, data=offer.encode(), method='POST',
        headers={'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token})
    try:
        resp = urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        fail('WHIP POST: HTTP %d: %s' % (e.code, e.read().decode(errors='replace')))
        return False
    except Exception as e:
        fail('WHIP POST: %s' % e)
        return False
    text = resp.read().decode()
    print('gst-whip: answer\n' + text, file=sys.stderr, flush=True)
    ok, msg = GstSdp.SDPMessage.new_from_text(text)
    if ok != GstSdp.SDPResult.OK:
        fail('bad answer SDP')
        return False
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
    w.emit('set-remote-description', answer, Gst.Promise.new())
    print('published ' + (resp.headers.get('Location') or ''), flush=True)
    return False

posted = [False]

def post_once():
    if not posted[0] and w.get_property('local-description') is not None:
        posted[0] = True
        post_offer()
    return False

def on_gathering(*_):
    if w.get_property('ice-gathering-state') == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
        GLib.idle_add(post_once)

def on_offer(promise, _):
    reply = promise.get_reply()  # owns the offer: keep it alive until the offer is applied
    offer = reply.get_value('offer')
    if offer is None:
        fail('create-offer: %s' % reply.to_string())
        return
    w.emit('set-local-description', offer, Gst.Promise.new())

def on_negotiation_needed(_):
    w.emit('create-offer', None, Gst.Promise.new_with_change_func(on_offer, None))

tr = w.emit('get-transceiver', 0)
tr.set_property('direction', GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
tr.set_property('do-nack', True)  # offers RTX (rtx/90000, apt=102), as GStreamer publishers usually do
w.connect('on-negotiation-needed', on_negotiation_needed)
w.connect('notify::ice-gathering-state', on_gathering)
bus = pipe.get_bus()
bus.add_signal_watch()
bus.connect('message::error', lambda _, m: fail('pipeline: %s' % (m.parse_error(),)))
pipe.set_state(Gst.State.PLAYING)
GLib.timeout_add(3000, post_once)  # gathering that never says complete: post what there is
loop.run()
pipe.set_state(Gst.State.NULL)
sys.exit(status[0])
`

// needGStreamerWebRTC skips unless Debian's python3 can drive webrtcbin with x264.
func needGStreamerWebRTC(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gst-launch-1.0"); err != nil {
		t.Skip("GStreamer is needed (gstreamer1.0-tools and plugins): ", err)
	}
	for _, el := range []string{"webrtcbin", "nicesrc", "x264enc", "rtph264pay", "videotestsrc"} {
		if err := exec.Command("gst-inspect-1.0", el).Run(); err != nil {
			t.Skipf("GStreamer element %s is missing (gstreamer1.0-plugins-bad, -nice, -ugly, -good, -base)", el)
		}
	}
	const python = "/usr/bin/python3" // Debian's, where python3-gi is installed
	probe := "import gi; gi.require_version('GstWebRTC', '1.0'); gi.require_version('GstSdp', '1.0'); from gi.repository import GstWebRTC, GstSdp"
	if out, err := exec.Command(python, "-c", probe).CombinedOutput(); err != nil {
		t.Skipf("%s cannot use GStreamer's WebRTC library (python3-gi, gir1.2-gst-plugins-bad-1.0): %v\n%s", python, err, out)
	}
	return python
}

// TestE2EGStreamerWHIPPublisher: GStreamer's webrtcbin publishes H.264 to edged over WHIP; a
// pion WHEP viewer receives it (decoded by ffmpeg) and so does Chromium (getStats). The
// publisher runs in a network namespace of its own: libnice gathers on every interface it
// sees, and there it sees only the test's veth.
func TestE2EGStreamerWHIPPublisher(t *testing.T) {
	python := needGStreamerWebRTC(t)
	needNetns(t)
	removeStaleNetns()
	gstNS, viewNS := newNetns(t, 0), newNetns(t, 1)
	d := startDaemon(t,
		"EDGED_HTTP_LISTEN="+gstNS.hostIP+":0",
		"EDGED_WEBRTC_INTERFACES="+strings.Join([]string{"lo", gstNS.hostIf, viewNS.hostIf}, ","),
		"EDGED_WEBRTC_INCLUDE_LOOPBACK=true", // the pion viewer stays on loopback
		"EDGED_CAMERA_WIDTH=320", "EDGED_CAMERA_HEIGHT=240", "EDGED_CAMERA_FPS=10", "EDGED_ENCODER_LAYERS=1",
	)
	now := time.Now()
	pubToken, err := token.Mint([]byte(testSecret), token.Claims{Identity: "gstreamer", Room: "main",
		Grants: token.Grants{Publish: true}, IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "gst_whip.py")
	if err := os.WriteFile(script, []byte(gstWHIP), 0o644); err != nil {
		t.Fatal(err)
	}
	gctx, stopGst := context.WithCancel(context.Background())
	gst := exec.CommandContext(gctx, "ip", "netns", "exec", gstNS.name, python, script, d.url+"/whip/main", pubToken)
	gstOut := &lockedBuffer{}
	gst.Stdout, gst.Stderr = gstOut, gstOut
	if err := gst.Start(); err != nil {
		t.Fatal(err)
	}
	gstDone := make(chan struct{})
	var gstErr error
	go func() { gstErr = gst.Wait(); close(gstDone) }()
	t.Cleanup(func() { stopGst(); <-gstDone })

	// The publisher's track appears in the room with media flowing.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ls := layerSubscribers(t, d, "main", "gstreamer")
		if ls["_kbps"] > 0 {
			t.Logf("GStreamer's H.264 reaches the SFU at %d kbit/s", ls["_kbps"])
			break
		}
		select {
		case <-gstDone:
			t.Fatalf("the GStreamer publisher exited: %v\n%s\n%s", gstErr, gstOut, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no media from the GStreamer publisher in 20 s: %v\n%s\n%s", ls, gstOut, d.stderr)
		}
		time.Sleep(250 * time.Millisecond)
	}
	whep := d.url + "/whep/main/gstreamer"

	// pion viewer: 6 s of RTP, depacketized and decoded by ffmpeg.
	var mu sync.Mutex
	var stream bytes.Buffer
	var depack codecs.H264Packet
	var packets, lost, accessUnits int
	var lastSeq uint16
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := whepclient.Dial(ctx, whepclient.Options{URL: whep, Token: testToken, LoopbackOnly: true}, func(p *rtp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if packets > 0 && p.SequenceNumber != lastSeq+1 {
			lost += int(p.SequenceNumber - lastSeq - 1)
		}
		packets++
		lastSeq = p.SequenceNumber
		if p.Marker {
			accessUnits++
		}
		if nal, err := depack.Unmarshal(p.Payload); err == nil {
			stream.Write(nal)
		}
	})
	if err != nil {
		t.Fatalf("pion WHEP viewer: %v\n%s", err, d.stderr)
	}
	time.Sleep(6 * time.Second)
	c.Close()
	mu.Lock()
	annexB := bytes.Clone(stream.Bytes())
	mu.Unlock()
	idrs := 0
	var prev h264.NALType
	for _, nal := range h264.SplitAnnexB(annexB) {
		ty := h264.Type(nal)
		if ty == h264.NALIDR && prev != h264.NALIDR {
			idrs++
		}
		prev = ty
	}
	frames := decodeWithFFmpeg(t, annexB, 640, 360)
	t.Logf("pion viewer: %d RTP packets (%d lost), %d access units, %d keyframes; ffmpeg decoded %d pictures of 640x360 from them",
		packets, lost, accessUnits, idrs, len(frames))
	if idrs == 0 || len(frames) < 45 { // 6 s at 15 fps, allowing for the wait for the first keyframe
		t.Errorf("pion viewer: %d keyframes, %d decoded pictures in 6 s of a 15 fps stream; want a keyframe and at least 45", idrs, len(frames))
	}

	// Chromium viewer in its own namespace: the WHEP script of the simulcast test.
	capture := []chromedp.ExecAllocatorOption{
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("unsafely-treat-insecure-origin-as-secure", d.url),
	}
	view := browserIn(t, viewNS, capture...)
	startPeer(t, view, d.url+"/e2e-blank", whepView, whep, testToken)
	var s receiverStats
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if s, err = evalJSON[receiverStats](view, readReceiver); err == nil && s.FramesDecoded >= 45 {
			break
		}
	}
	t.Logf("Chromium viewer: %s decoded %d frames (%d keyframes) at %dx%d with %s over %s <- %s; %d lost, %d freezes",
		s.Codec, s.FramesDecoded, s.KeyFramesDecoded, s.FrameWidth, s.FrameHeight, s.Decoder, s.Local, s.Remote, s.PacketsLost, s.FreezeCount)
	if s.FramesDecoded < 45 || s.FrameWidth != 640 || s.FrameHeight != 360 || !strings.EqualFold(s.Codec, "video/H264") {
		t.Errorf("Chromium viewer: %d frames of %s at %dx%d; want at least 45 of video/H264 at 640x360\n%s", s.FramesDecoded, s.Codec, s.FrameWidth, s.FrameHeight, d.stderr)
	}
	if s.Local != viewNS.nsIP {
		t.Errorf("Chromium viewer's media path %s <- %s; want its veth address %s", s.Local, s.Remote, viewNS.nsIP)
	}
	select {
	case <-gstDone:
		t.Errorf("the GStreamer publisher exited during the test: %v\n%s", gstErr, gstOut)
	default:
	}
	if t.Failed() {
		t.Logf("GStreamer publisher's output:\n%s", gstOut)
	}
}
