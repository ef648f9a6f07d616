package edge

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
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
	srv, err := New(Config{Token: testToken, Interfaces: []string{"lo"}, IncludeLoopback: true, MaxViewers: 1000},
		slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	srv.Publish("camera", NewTrack("camera", "fuzz", func() {}))
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
