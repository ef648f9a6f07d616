package edge

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
)

// browserLikeOffer makes a real recvonly H.264 offer with a pion peer, as a seed.
func browserLikeOffer(f *testing.F) string {
	f.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		f.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		f.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		f.Fatal(err)
	}
	return offer.SDP
}

func fuzzServer(f *testing.F) *Server {
	srv, err := New(Config{Secret: []byte(testSecret), Interfaces: []string{"lo"}, IncludeLoopback: true, MaxViewers: 1000},
		slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	track := sfu.NewTrack(sfu.TrackInfo{ID: "camera-video", Kind: webrtc.RTPCodecTypeVideo, Source: "camera", Codec: H264Codec}, CameraID, nil, nil)
	track.AddLayer("", sfu.High, 1280, 720)
	srv.PublishCamera(track)
	f.Cleanup(func() { srv.Close() })
	return srv
}

// FuzzWHEPOffer: whatever the body, the answer is 201 or a 4xx with a message, never a 5xx
// or a panic, and a rejected offer leaves no session behind.
func FuzzWHEPOffer(f *testing.F) {
	real := browserLikeOffer(f)
	f.Add(real)
	f.Add(minimalOffer)
	f.Add(minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\na=recvonly\r\n")
	f.Add(minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\na=rtpmap:102 H264/90000\r\n" +
		"a=fmtp:102 packetization-mode=1;profile-level-id=640032\r\na=recvonly\r\n")
	f.Add(strings.Replace(real, "a=ice-ufrag", "a=ice-ufrog", 1))
	f.Add(strings.Replace(real, "H264/90000", "H265/90000", -1))
	f.Add("v=0\r\n")
	f.Add("")
	srv := fuzzServer(f)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/whep/camera", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/sdp")
		rec := httptest.NewRecorder()
		before := srv.Viewers()
		h.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code == http.StatusCreated:
			loc := rec.Header().Get("Location")
			del := httptest.NewRequest(http.MethodDelete, loc, nil)
			del.Header.Set("Authorization", "Bearer "+testToken)
			drec := httptest.NewRecorder()
			h.ServeHTTP(drec, del)
			if drec.Code != http.StatusOK {
				t.Fatalf("DELETE %s after 201: %d", loc, drec.Code)
			}
		case code >= 400 && code < 500:
			if strings.TrimSpace(rec.Body.String()) == "" {
				t.Fatalf("%d without a message", code)
			}
			if srv.Viewers() != before {
				t.Fatalf("a rejected offer (%d) left a session behind", code)
			}
		default:
			t.Fatalf("status %d for body %q: %s", code, body, rec.Body.String())
		}
	})
}

// FuzzWHEPPatch: trickle fragments never panic and never get a 5xx.
func FuzzWHEPPatch(f *testing.F) {
	f.Add("a=ice-ufrag:abcd\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n")
	f.Add("a=candidate:\r\n")
	f.Add("a=ice-ufrag:zzzz\r\n")
	f.Add("\x00")
	srv := fuzzServer(f)
	h := srv.Handler()
	req := httptest.NewRequest(http.MethodPost, "/whep/camera", strings.NewReader(browserLikeOffer(f)))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/sdp")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		f.Fatalf("session for the fuzzer: %d %s", rec.Code, rec.Body.String())
	}
	loc := rec.Header().Get("Location")
	f.Fuzz(func(t *testing.T, frag string) {
		req := httptest.NewRequest(http.MethodPatch, loc, strings.NewReader(frag))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for fragment %q: %s", rec.Code, frag, rec.Body.String())
		}
	})
}

// FuzzWHIPOffer: whatever a publisher posts, the answer is 201 or a 4xx with a message,
// never a 5xx or a panic, and a rejected offer leaves nobody in the room.
func FuzzWHIPOffer(f *testing.F) {
	f.Add(minimalOffer)
	f.Add(minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n")
	f.Add(minimalOffer + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n")
	f.Add(minimalOffer + "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=42\r\na=sendonly\r\n" +
		"a=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h\r\n")
	f.Add("v=0\r\n")
	srv := fuzzServer(f)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/whip/main", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/sdp")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code == http.StatusCreated:
			del := httptest.NewRequest(http.MethodDelete, rec.Header().Get("Location"), nil)
			del.Header.Set("Authorization", "Bearer "+testToken)
			drec := httptest.NewRecorder()
			h.ServeHTTP(drec, del)
			if drec.Code != http.StatusOK {
				t.Fatalf("DELETE after 201: %d", drec.Code)
			}
		case code >= 400 && code < 500:
			if strings.TrimSpace(rec.Body.String()) == "" {
				t.Fatalf("%d without a message", code)
			}
			if p := srv.Room("main").Participant("tester"); p != nil {
				t.Fatalf("a rejected offer (%d) left its publisher in the room", code)
			}
		default:
			t.Fatalf("status %d for body %q: %s", code, body, rec.Body.String())
		}
	})
}

// FuzzRoomMessage: every client message either parses into a known type with its required
// fields or is refused with errBadMessage; nothing panics.
func FuzzRoomMessage(f *testing.F) {
	for _, m := range []string{
		`{"type":"join","token":"x"}`,
		`{"type":"publish_offer","sdp":"v=0","tracks":[{"mid":"0","source":"camera","simulcast":true}]}`,
		`{"type":"subscribe_answer","sdp":"v=0"}`,
		`{"type":"candidate","target":"publish","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}}`,
		`{"type":"subscription","track_id":"t","subscribed":true,"quality":"low"}`,
		`{"type":"mute","track_id":"t","muted":true}`,
		`{"type":"leave"}`,
		`{"type":"ping","t":1.5}`,
		`{"type":"ping","token":"x"}`,
		`{"type":"nope"}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseClientMessage(b)
		if err != nil {
			if !errors.Is(err, errBadMessage) {
				t.Fatalf("error %v does not wrap errBadMessage", err)
			}
			return
		}
		if _, ok := allowedFields[m.Type]; !ok {
			t.Fatalf("accepted unknown type %q", m.Type)
		}
		if m.Type == "join" && m.Token == "" || m.Type == "mute" && m.Muted == nil || m.Type == "subscription" && m.Subscribed == nil {
			t.Fatalf("accepted %s without its required fields: %s", m.Type, b)
		}
	})
}
