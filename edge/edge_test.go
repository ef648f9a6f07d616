package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/token"
	"github.com/edgeflux/edge/internal/whepclient"
)

const testSecret = "test-secret-0123456789abcdefghijklmnop"

// testToken may do everything in the default room.
var testToken = mintToken("tester", "main", token.Grants{Publish: true, Subscribe: true, Admin: true})

func mintToken(identity, room string, g token.Grants) string {
	now := time.Now()
	t, err := token.Mint([]byte(testSecret), token.Claims{Identity: identity, Room: room, Grants: g,
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		panic(err)
	}
	return t
}

// fakeAU is an Annex-B access unit whose slice NAL carries its frame number, so a receiver can
// check what it got without a codec. Keyframes carry SPS and PPS like a real IDR.
func fakeAU(seq uint64, keyframe bool, size int) media.AccessUnit {
	// The number is text: binary zeros would read as an Annex-B start code.
	body := []byte(fmt.Sprintf("frame=%010d", seq))
	body = append(body, make([]byte, size-len(body))...)
	for i := len("frame=0000000000"); i < len(body); i++ {
		body[i] = 0xa5
	}
	var b []byte
	nalType := byte(0x41) // non-IDR slice
	if keyframe {
		b = append(b, 0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80)
		nalType = 0x65
	}
	b = append(append(b, 0, 0, 0, 1, nalType), body...)
	return media.AccessUnit{Data: b, Keyframe: keyframe, FrameSeq: seq, CaptureTime: time.Now()}
}

// testServer serves a Track fed with fake access units at 100 fps, keyframe every 50 or on request.
type testServer struct {
	srv       *Server
	url       string
	track     *sfu.Layer
	keyframes atomic.Int64 // keyframe requests received
	live      atomic.Bool
}

func startServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	ts := &testServer{}
	ts.live.Store(true)
	cfg := Config{
		Secret: []byte(testSecret), Interfaces: []string{"lo"}, IncludeLoopback: true, MaxViewers: 10,
		Status: func() StreamStatus {
			if !ts.live.Load() {
				return StreamStatus{Error: "camera unavailable: test"}
			}
			return StreamStatus{Live: true}
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	forceKey := make(chan struct{}, 1)
	track := sfu.NewTrack(sfu.TrackInfo{ID: "camera-video", Kind: webrtc.RTPCodecTypeVideo, Source: "camera", Codec: H264Codec}, CameraID,
		func(*sfu.Layer) {
			ts.keyframes.Add(1)
			select {
			case forceKey <- struct{}{}:
			default:
			}
		}, nil)
	ts.track = track.AddLayer("", sfu.High, 1280, 720)
	srv.PublishCamera(track)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ctx, ln) })
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(0); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			key := seq%50 == 0
			select {
			case <-forceKey:
				key = true
			default:
			}
			ts.track.WriteAccessUnit(fakeAU(seq, key, 3000))
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	ts.srv, ts.url = srv, "http://"+ln.Addr().String()
	return ts
}

// viewer dials a session that must succeed and is closed when the test ends.
func viewer(t *testing.T, ts *testServer) *whepclient.Client {
	t.Helper()
	c, err := dial(t, ts, func(*rtp.Packet) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t *testing.T, ts *testServer, onPacket func(*rtp.Packet)) (*whepclient.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return whepclient.Dial(ctx, whepclient.Options{URL: ts.url + "/whep/camera", Token: testToken, LoopbackOnly: true}, onPacket)
}

func TestWHEPSessionReceivesContiguousStreamFromKeyframe(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)

	type got struct {
		frames  []uint64
		seqs    []uint16
		firstKF bool
	}
	var mu sync.Mutex
	var g got
	var depack codecs.H264Packet
	done := make(chan struct{})
	c, err := dial(t, ts, func(p *rtp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if len(g.seqs) == 0 {
			g.firstKF = strings.Contains(string(mustDepack(&depack, p.Payload)), "\x00\x00\x00\x01\x67")
		}
		g.seqs = append(g.seqs, p.SequenceNumber)
		if nal, err := depack.Unmarshal(p.Payload); err == nil && len(nal) > 0 {
			for _, n := range splitNALs(nal) {
				var frame uint64
				if _, err := fmt.Sscanf(string(n[1:]), "frame=%010d", &frame); err == nil {
					g.frames = append(g.frames, frame)
				}
			}
		}
		if len(g.frames) == 60 {
			close(done)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Location(), ts.url+"/sessions/") {
		t.Errorf("Location %q is not a session URL under /sessions/", c.Location())
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("did not receive 60 frames in 10 s")
	}
	mu.Lock()
	if !g.firstKF {
		t.Error("first packet received is not the start of a keyframe (SPS)")
	}
	for i := 1; i < len(g.seqs); i++ {
		if g.seqs[i] != g.seqs[i-1]+1 {
			t.Fatalf("sequence gap between packets %d and %d: %d -> %d", i-1, i, g.seqs[i-1], g.seqs[i])
		}
	}
	for i := 1; i < len(g.frames); i++ {
		if g.frames[i] != g.frames[i-1]+1 {
			t.Fatalf("frames out of order or missing: %d then %d", g.frames[i-1], g.frames[i])
		}
	}
	mu.Unlock()
	if n := ts.srv.Viewers(); n != 1 {
		t.Errorf("Viewers() = %d with one session", n)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close (DELETE): %v", err)
	}
	if n := ts.srv.Viewers(); n != 0 {
		t.Errorf("Viewers() = %d after DELETE", n)
	}
	if code, _ := request(t, http.MethodDelete, c.Location(), testToken, "", ""); code != http.StatusNotFound {
		t.Errorf("second DELETE: %d, want 404", code)
	}
}

func mustDepack(d *codecs.H264Packet, payload []byte) []byte {
	b, _ := d.Unmarshal(payload)
	return b
}

func splitNALs(annexB []byte) [][]byte {
	var out [][]byte
	for _, part := range strings.Split(string(annexB), "\x00\x00\x00\x01") {
		if part != "" {
			out = append(out, []byte(part))
		}
	}
	return out
}

func request(t *testing.T, method, url, token, contentType, body string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	resp.Header.Set("X-Test-Body", string(msg))
	return resp.StatusCode, resp.Header
}

const minimalOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n"

func TestWHEPRejectsBadRequests(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	audioOnly := minimalOffer + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n"
	vp8Only := minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n"
	tests := []struct {
		name, path, token, ctype, body string
		down                           bool
		code                           int
		msg                            string
	}{
		{"no token", "/whep/camera", "", "application/sdp", minimalOffer, false, 401, "access token"},
		{"wrong token", "/whep/camera", "wrong-token-0123456789", "application/sdp", minimalOffer, false, 401, "access token"},
		{"garbage", "/whep/camera", testToken, "application/sdp", "\x00\xffnot sdp at all", false, 400, "bad SDP offer"},
		{"too large", "/whep/camera", testToken, "application/sdp", strings.Repeat("a=x\r\n", 70<<10/5), false, 413, "larger than 64 KiB"},
		{"wrong content type", "/whep/camera", testToken, "application/json", "{}", false, 415, "Content-Type: application/sdp"},
		{"unknown stream", "/whep/nope", testToken, "application/sdp", minimalOffer, false, 404, "no such stream"},
		{"no video", "/whep/camera", testToken, "application/sdp", audioOnly, false, 400, "no video"},
		{"no H.264", "/whep/camera", testToken, "application/sdp", vp8Only, false, 400, "no H.264"},
		{"H.264 mode 0 only", "/whep/camera", testToken, "application/sdp",
			minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\na=recvonly\r\n", false, 400, "packetization-mode=1"},
		{"stream down", "/whep/camera", testToken, "application/sdp", minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n" +
			"a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\na=recvonly\r\n", true, 503, "camera unavailable"},
		{"status without token", "/api/status", "", "", "", false, 401, "access token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts.live.Store(!tc.down)
			defer ts.live.Store(true)
			method := http.MethodPost
			if tc.path == "/api/status" {
				method = http.MethodGet
			}
			code, h := request(t, method, ts.url+tc.path, tc.token, tc.ctype, tc.body)
			if code != tc.code || !strings.Contains(h.Get("X-Test-Body"), tc.msg) {
				t.Errorf("got %d %q; want %d with %q", code, h.Get("X-Test-Body"), tc.code, tc.msg)
			}
			if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer WWW-Authenticate challenge")
			}
			if code == 503 && h.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		})
	}
	if n := ts.srv.Viewers(); n != 0 {
		t.Errorf("%d sessions left after rejected requests", n)
	}
}

func TestWHEPViewerLimit(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, func(c *Config) { c.MaxViewers = 1 })
	viewer(t, ts)
	_, err := dial(t, ts, func(*rtp.Packet) {})
	var se *whepclient.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || !strings.Contains(se.Body, "viewer limit") {
		t.Fatalf("second viewer over a limit of 1: %v; want 503 viewer limit", err)
	}
}

func TestWHEPTrickleAndPreflight(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	c := viewer(t, ts)
	ufrag := c.PeerConnection().LocalDescription().SDP
	ufrag = ufrag[strings.Index(ufrag, "a=ice-ufrag:")+len("a=ice-ufrag:"):]
	ufrag = ufrag[:strings.IndexAny(ufrag, "\r\n")]
	frag := "a=ice-ufrag:" + ufrag + "\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
	tests := []struct {
		name, url, ctype, body string
		code                   int
	}{
		{"candidate", c.Location(), "application/trickle-ice-sdpfrag", frag, 204},
		{"wrong type", c.Location(), "application/sdp", frag, 415},
		{"ICE restart", c.Location(), "application/trickle-ice-sdpfrag", "a=ice-ufrag:other\r\n", 422},
		{"bad candidate", c.Location(), "application/trickle-ice-sdpfrag", "a=candidate:garbage\r\n", 400},
		{"unknown session", ts.url + "/sessions/0000", "application/trickle-ice-sdpfrag", frag, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, h := request(t, http.MethodPatch, tc.url, testToken, tc.ctype, tc.body); code != tc.code {
				t.Errorf("PATCH: %d %q; want %d", code, h.Get("X-Test-Body"), tc.code)
			}
		})
	}
	code, h := request(t, http.MethodOptions, ts.url+"/whep/camera", "", "", "")
	if code != http.StatusNoContent || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("OPTIONS preflight: %d %v", code, h)
	}
}

func TestPLIBecomesKeyframeRequest(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	c := viewer(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := ts.keyframes.Load()
	if err := c.SendPLI(ctx); err != nil {
		t.Fatal(err)
	}
	for ts.keyframes.Load() == before {
		select {
		case <-ctx.Done():
			t.Fatal("a PLI from the viewer did not become a keyframe request")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestPageGetsTokenOnlyWhenTrustedAndLocal(t *testing.T) {
	for _, trust := range []bool{false, true} {
		ts := startServer(t, func(c *Config) { c.TrustLoopback = trust })
		code, h := request(t, http.MethodGet, ts.url+"/", "", "", "")
		page := h.Get("X-Test-Body")
		if code != 200 || !strings.Contains(page, "<video") {
			t.Fatalf("GET /: %d", code)
		}
		_, rest, _ := strings.Cut(page, `<meta name="edge-token" content="`)
		given, _, _ := strings.Cut(rest, `"`)
		claims, err := token.Verify([]byte(testSecret), given, time.Now())
		if got := err == nil; got != trust {
			t.Errorf("trust_loopback=%v: valid token in page = %v (%v)", trust, got, err)
		}
		if trust && (claims.Room != "main" || !claims.Grants.Publish || !claims.Grants.Subscribe) {
			t.Errorf("page token %+v: want publish and subscribe in room main", claims)
		}
		if h.Get("Content-Security-Policy") == "" {
			t.Error("page served without a Content-Security-Policy")
		}
	}
}

func TestSwitchEndpoints(t *testing.T) {
	var privacy, joined []bool
	ts := startServer(t, func(c *Config) {
		c.SetPrivacy = func(on bool) { privacy = append(privacy, on) }
		c.SetInCall = func(j bool) { joined = append(joined, j) }
	})
	tests := []struct {
		name, path, token, body string
		code                    int
	}{
		{"privacy on", "/api/privacy", testToken, `{"on": true}`, 200},
		{"privacy off", "/api/privacy", testToken, `{"on": false}`, 200},
		{"leave", "/api/call", testToken, `{"joined": false}`, 200},
		{"no token", "/api/privacy", "", `{"on": true}`, 401},
		{"wrong field", "/api/privacy", testToken, `{"joined": true}`, 400},
		{"not a bool", "/api/privacy", testToken, `{"on": "yes"}`, 400},
		{"two fields", "/api/privacy", testToken, `{"on": true, "off": true}`, 400},
		{"garbage", "/api/call", testToken, `{{`, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, h := request(t, http.MethodPost, ts.url+tc.path, tc.token, "application/json", tc.body); code != tc.code {
				t.Errorf("%d %q; want %d", code, h.Get("X-Test-Body"), tc.code)
			}
		})
	}
	if fmt.Sprint(privacy) != "[true false]" || fmt.Sprint(joined) != "[false]" {
		t.Errorf("switches reached the daemon as privacy %v, joined %v; want [true false] and [false]", privacy, joined)
	}
	unwired := startServer(t, nil)
	if code, _ := request(t, http.MethodPost, unwired.url+"/api/privacy", testToken, "application/json", `{"on": true}`); code != 501 {
		t.Errorf("a server without the switch answered %d; want 501", code)
	}
}

// TestMDNSSessionsLeaveNothingRunning: with mDNS on (the default), a viewer's session ends
// without leaving goroutines behind (its mDNS sockets must be ones pion's mDNS can read;
// batched ones made its read loop spin forever).
func TestMDNSSessionsLeaveNothingRunning(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, func(c *Config) { c.MDNS = true })
	for range 2 {
		c := viewer(t, ts)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the sessions to end", func() bool { return ts.srv.Viewers() == 0 })
}
