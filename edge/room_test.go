package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/roomclient"
	"github.com/edgeflux/edge/internal/token"
)

// participant joins the test server's room over the WebSocket as identity.
func participant(t *testing.T, ts *testServer, identity string, g token.Grants) *roomclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := roomclient.Dial(ctx, roomclient.Options{
		URL: "ws" + strings.TrimPrefix(ts.url, "http") + "/rtc", Token: mintToken(identity, "main", g), LoopbackOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var everything = token.Grants{Publish: true, Subscribe: true}

// mediaSource feeds a VP8 video track (a keyframe every 10 pictures) and an Opus audio track
// with fake payloads until the test ends.
func mediaSource(t *testing.T, name string) (video, audio *webrtc.TrackLocalStaticRTP) {
	t.Helper()
	var err error
	video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v-"+name, name)
	if err != nil {
		t.Fatal(err)
	}
	audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a-"+name, name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := uint32(0); ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p := byte(1) // interframe
			if i%10 == 0 {
				p = 0 // keyframe
			}
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: i * 1800},
				Payload: append([]byte{0x10, p}, make([]byte, 500)...)})
			_ = audio.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: i * 960},
				Payload: []byte{0xfc, 0xff, 0xfe}})
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return video, audio
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// received reports whether c got at least n packets of the participant's track of kind.
func received(c *roomclient.Client, participant string, kind webrtc.RTPCodecType, n uint64) bool {
	for _, r := range c.Remotes() {
		if r.Participant == participant && r.Kind == kind && r.Packets.Load() >= n {
			return true
		}
	}
	return false
}

// TestRoomParticipantsReceiveEachOtherAndTheCamera: two participants publishing video and
// audio get each other's media and the camera's; when one leaves the other is told, and the
// room is empty of it.
func TestRoomParticipantsReceiveEachOtherAndTheCamera(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	alice := participant(t, ts, "alice", everything)
	bob := participant(t, ts, "bob", everything)
	if got := fmt.Sprint(bob.Joined["participants"]); !strings.Contains(got, "alice") || !strings.Contains(got, "camera") {
		t.Errorf("bob's joined message lists %s; want alice and the camera", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, c := range []struct {
		cl   *roomclient.Client
		name string
	}{{alice, "alice"}, {bob, "bob"}} {
		v, a := mediaSource(t, c.name)
		if err := c.cl.Publish(ctx, roomclient.Publication{Track: v, Source: "camera"}, roomclient.Publication{Track: a, Source: "microphone"}); err != nil {
			t.Fatalf("%s publish: %v", c.name, err)
		}
	}
	waitFor(t, "everyone to receive everyone", func() bool {
		return received(alice, "bob", webrtc.RTPCodecTypeVideo, 20) && received(alice, "bob", webrtc.RTPCodecTypeAudio, 20) &&
			received(bob, "alice", webrtc.RTPCodecTypeVideo, 20) && received(bob, "alice", webrtc.RTPCodecTypeAudio, 20) &&
			received(alice, CameraID, webrtc.RTPCodecTypeVideo, 20) && received(bob, CameraID, webrtc.RTPCodecTypeVideo, 20)
	})
	if _, err := alice.Wait(ctx, func(m roomclient.Message) bool {
		return m.Type() == "participant_joined" && strings.Contains(fmt.Sprint(m["participant"]), "bob")
	}); err != nil {
		t.Error("alice was not told bob joined:", err)
	}
	rooms := ts.srv.Rooms()
	if len(rooms) != 1 || len(rooms[0].Participants) != 3 {
		t.Fatalf("rooms %+v; want main with alice, bob and camera", rooms)
	}

	bob.Close()
	if _, err := alice.Wait(ctx, func(m roomclient.Message) bool {
		return m.Type() == "participant_left" && m["participant_id"] == "bob"
	}); err != nil {
		t.Fatal("alice was not told bob left:", err)
	}
	waitFor(t, "bob to be gone from the room", func() bool { return ts.srv.Room("main").Participant("bob") == nil })
	if n := len(ts.srv.Room("main").Participants()); n != 2 {
		t.Errorf("%d participants after bob left; want alice and the camera", n)
	}
}

// TestRoomRefusesBadTokensAndMessages: a bad token gets an error and no room; a bad
// message gets an error and the session goes on.
func TestRoomRefusesBadTokensAndMessages(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(ts.url, "http") + "/rtc"
	now := time.Now()
	expired, _ := token.Mint([]byte(testSecret), token.Claims{Identity: "eve", Room: "main", Grants: everything,
		IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)})
	otherKey, _ := token.Mint([]byte("another-secret-0123456789abcdefghijkl"), token.Claims{Identity: "eve", Room: "main", Grants: everything,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	for name, tok := range map[string]string{"garbage": "not-a-jwt", "expired": expired, "other key": otherKey,
		"no grants": mintToken("eve", "main", token.Grants{})} {
		if _, err := roomclient.Dial(ctx, roomclient.Options{URL: url, Token: tok, LoopbackOnly: true}); err == nil {
			t.Errorf("%s token: joined", name)
		}
	}
	if n := ts.srv.Room("main").Len(); n != 1 {
		t.Errorf("%d participants after refused joins; want only the camera", n)
	}

	alice := participant(t, ts, "alice", token.Grants{Subscribe: true})
	for _, bad := range []string{`{"type":"teleport"}`, `{"type":"mute","track_id":"x"}`, `not json`,
		`{"type":"ping","token":"x"}`, `{"type":"subscription","track_id":"nope","subscribed":true}`} {
		before := len(alice.Messages())
		if err := alice.SendRaw([]byte(bad)); err != nil {
			t.Fatal(err)
		}
		m, err := alice.WaitAfter(ctx, before, func(m roomclient.Message) bool { return m.Type() == "error" })
		if err != nil {
			t.Fatalf("%s: %v", bad, err)
		}
		if code := fmt.Sprint(m["code"]); code != "400" && code != "404" {
			t.Errorf("%s: error code %s", bad, code)
		}
	}
	before := len(alice.Messages())
	if err := alice.Send(roomclient.Message{"type": "publish_offer", "sdp": "v=0"}); err != nil {
		t.Fatal(err)
	}
	if m, err := alice.WaitAfter(ctx, before, func(m roomclient.Message) bool { return m.Type() == "error" }); err != nil || fmt.Sprint(m["code"]) != "403" {
		t.Errorf("publishing without the grant: %v %v; want error 403", m, err)
	}
	before = len(alice.Messages())
	if err := alice.Send(roomclient.Message{"type": "ping", "t": 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitAfter(ctx, before, func(m roomclient.Message) bool { return m.Type() == "pong" }); err != nil {
		t.Error("the session did not survive bad messages:", err)
	}
}

// TestEndpointsRequireTokens: nothing but the page answers without a valid token.
func TestEndpointsRequireTokens(t *testing.T) {
	ts := startServer(t, nil)
	subscriber := mintToken("viewer", "main", token.Grants{Subscribe: true})
	otherRoom := mintToken("viewer", "elsewhere", everything)
	for _, tc := range []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/api/status", "", 401},
		{"GET", "/api/status", subscriber, 403},
		{"GET", "/api/rooms", "", 401},
		{"GET", "/api/sessions", "", 401},
		{"GET", "/api/sessions", subscriber, 403},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", subscriber, 403},
		{"POST", "/api/privacy", subscriber, 403},
		{"POST", "/whep/camera", "", 401},
		{"POST", "/whep/main/camera", otherRoom, 403},
		{"POST", "/whip/main", "", 401},
		{"POST", "/whip/main", subscriber, 403},
		{"DELETE", "/sessions/0000", "", 404},
		{"GET", "/metrics", testToken, 200},
		{"GET", "/api/rooms", testToken, 200},
		{"GET", "/api/sessions", testToken, 200},
	} {
		code, h := request(t, tc.method, ts.url+tc.path, tc.token, "application/sdp", "")
		if code != tc.code {
			t.Errorf("%s %s: %d %q; want %d", tc.method, tc.path, code, h.Get("X-Test-Body"), tc.code)
		}
	}
	_, h := request(t, http.MethodGet, ts.url+"/metrics", testToken, "", "")
	for _, name := range []string{"edge_participants{room=\"main\"} 1", "process_resident_memory_bytes", "go_goroutines", "edge_layer_bitrate_bps{room=\"main\",participant=\"camera\""} {
		if !strings.Contains(h.Get("X-Test-Body"), name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}

func fmtJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestVanishedParticipantIsCleanedUp: a participant whose media connections die without a
// word (a crashed app: the WebSocket stays open, nothing answers ICE) is removed once ICE
// gives up, and the others are told.
func TestVanishedParticipantIsCleanedUp(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	alice := participant(t, ts, "alice", everything)
	ghost := participant(t, ts, "ghost", everything)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, a := mediaSource(t, "ghost")
	if err := ghost.Publish(ctx, roomclient.Publication{Track: v, Source: "camera"}, roomclient.Publication{Track: a, Source: "microphone"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice to receive the ghost", func() bool { return received(alice, "ghost", webrtc.RTPCodecTypeVideo, 10) })
	// The ghost's peer connections vanish; its WebSocket stays open and silent.
	for _, pc := range []*webrtc.PeerConnection{ghost.PublishConnection(), ghost.SubscribeConnection()} {
		_ = pc.Close()
	}
	m, err := alice.Wait(ctx, func(m roomclient.Message) bool {
		return m.Type() == "participant_left" && m["participant_id"] == "ghost"
	})
	if err != nil {
		t.Fatal("the ghost was never cleaned up:", err)
	}
	if reason := fmt.Sprint(m["reason"]); !strings.Contains(reason, "connection") {
		t.Errorf("left because %q; want its connection", reason)
	}
	if p := ts.srv.Room("main").Participant("ghost"); p != nil {
		t.Error("the ghost is still in the room")
	}
}

// TestMuteBeforeTheFirstPacket: a page that joins muted sends mute for its declared track
// before any media has come. The server takes it (no 404), publishes the track muted, so
// others forward nothing of it, and unmuting starts it.
func TestMuteBeforeTheFirstPacket(t *testing.T) {
	ts := startServer(t, nil)
	alice := participant(t, ts, "alice", everything)
	bob := participant(t, ts, "bob", everything)
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v-alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := alice.Publish(ctx, roomclient.Publication{Track: video, Source: "camera"}); err != nil {
		t.Fatal(err)
	}
	var trackID string
	for _, m := range alice.Messages() {
		if m.Type() == "publish_answer" {
			for _, id := range m["tracks"].(map[string]any) {
				trackID = id.(string)
			}
		}
	}
	before := len(alice.Messages())
	if err := alice.Send(roomclient.Message{"type": "mute", "track_id": trackID, "muted": true}); err != nil {
		t.Fatal(err)
	}
	if err := alice.Send(roomclient.Message{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	m, err := alice.WaitAfter(ctx, before, func(m roomclient.Message) bool { return m.Type() == "pong" || m.Type() == "error" })
	if err != nil || m.Type() != "pong" {
		t.Fatalf("mute of declared track %s before its media: %v %v", trackID, m, err)
	}

	// Media starts; the track is published muted and bob gets none of it.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = video.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(i), Timestamp: i * 1800},
				Payload: append([]byte{0x10, byte(min(i%10, 1))}, make([]byte, 200)...)})
		}
	}()
	defer func() { close(stop); <-done }()
	pub, err := bob.Wait(ctx, func(m roomclient.Message) bool {
		return m.Type() == "track_published" && m["participant_id"] == "alice"
	})
	if err != nil {
		t.Fatal("bob was not told of alice's track:", err)
	}
	if tr, _ := pub["track"].(map[string]any); tr["muted"] != true {
		t.Errorf("alice's track was published as %v; want muted", pub["track"])
	}
	time.Sleep(time.Second)
	if received(bob, "alice", webrtc.RTPCodecTypeVideo, 1) {
		t.Error("bob received video of a track muted before its first packet")
	}
	if err := alice.Send(roomclient.Message{"type": "mute", "track_id": trackID, "muted": false}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob to receive alice's unmuted video", func() bool { return received(bob, "alice", webrtc.RTPCodecTypeVideo, 10) })
}
