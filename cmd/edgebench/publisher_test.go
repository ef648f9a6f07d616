//go:build cgo

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/leakcheck"
)

// whipServer is the least a WHIP endpoint does (RFC 9725): answer a POSTed offer with 201 and
// a Location, receive the media, and end the session on DELETE.
type whipServer struct {
	t        *testing.T
	api      *webrtc.API
	mu       sync.Mutex
	pc       *webrtc.PeerConnection
	readers  sync.WaitGroup
	kf       keyframeDetector
	keyframe chan struct{}
	packets  atomic.Int64
	deleted  atomic.Bool
	authSeen atomic.Value
	hop      *hopClock // notes what arrives, as a viewer would
}

func newWHIPServer(t *testing.T) *whipServer {
	api, err := newViewerAPI(true, false) // H.264 only, loopback only: what a server needs here too
	if err != nil {
		t.Fatal(err)
	}
	return &whipServer{t: t, api: api, keyframe: make(chan struct{}), hop: newHopClock()}
}

func (s *whipServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/whip/room":
		s.authSeen.Store(r.Header.Get("Authorization"))
		offer, _ := io.ReadAll(r.Body)
		pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		s.pc = pc
		s.mu.Unlock()
		var once sync.Once
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			s.readers.Add(1)
			defer s.readers.Done()
			buf := make([]byte, 1500)
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				s.packets.Add(1)
				p, ok := parseRTP(buf[:n])
				if !ok {
					continue
				}
				s.hop.received(p.payload)
				if s.kf.push(p) {
					once.Do(func() { close(s.keyframe) })
				}
			}
		})
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(answer); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		<-gathered
		w.Header().Set("Content-Type", "application/sdp")
		w.Header().Set("Location", "sessions/1") // relative, as RFC 9725 allows
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, pc.LocalDescription().SDP)
	case r.Method == http.MethodDelete && r.URL.Path == "/whip/sessions/1":
		s.deleted.Store(true)
		w.WriteHeader(http.StatusOK)
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}

func (s *whipServer) close() {
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
	s.readers.Wait()
}

// TestPublisherWHIP publishes a pre-encoded clip to a minimal WHIP server: the server must
// receive a complete keyframe, and the session must end with a DELETE to the Location. The
// server's receiving end matches every packet to the publisher's send time (the hop
// measurement's matching), and on loopback the hop is short.
func TestPublisherWHIP(t *testing.T) {
	leakcheck.Check(t)
	clip, err := encodeClip(1, 320, 240, 30, 300_000, 8)
	if err != nil {
		t.Fatal(err)
	}
	if !clip[0].keyframe {
		t.Fatal("the clip must start on an IDR so that every loop restarts on one")
	}
	srv := newWHIPServer(t)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub, err := startPublisher(ctx, log, hs.Client(), hs.URL+"/whip/room", "tok", clip, 30, 2.5, true, srv.hop)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.keyframe:
	case <-ctx.Done():
		t.Errorf("no complete keyframe reached the server (%d packets)", srv.packets.Load())
	}
	if err := pub.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	srv.close()
	hops := srv.hop.window()
	if got := srv.packets.Load(); len(hops) != int(got) || got == 0 {
		t.Errorf("%d of %d packets received were matched to their send time", len(hops), got)
	}
	if p50, _, worst := hopPercentiles(hops); p50 <= 0 || worst > 500*time.Millisecond {
		t.Errorf("publisher to receiver on loopback: p50 %v, max %v", p50, worst)
	}
	if !srv.deleted.Load() {
		t.Error("the publisher did not DELETE its session")
	}
	if got := srv.authSeen.Load(); got != "Bearer tok" {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}
}
