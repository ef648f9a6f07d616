package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/internal/token"
)

// maxOfferBytes bounds an SDP offer; real offers are a few KiB.
const maxOfferBytes = 64 << 10

// connectTimeout is how long a session may take to connect before it is dropped: a client
// that posted an offer and vanished must not hold a slot.
const connectTimeout = 20 * time.Second

// session is one WHIP publisher or WHEP viewer, created by a POST and ended by DELETE or by
// its connection failing. Its resource is /sessions/{id}.
type session struct {
	id, kind, room string
	pc             *webrtc.PeerConnection
	ufrag          string
	sub            *subscriber      // WHEP
	pub            *publisher       // WHIP
	participant    *sfu.Participant // WHIP
	closeOnce      sync.Once
}

// readBody checks the content type and reads at most maxOfferBytes, answering 415, 413 or 400
// itself when it cannot.
func readBody(w http.ResponseWriter, r *http.Request, contentType, what string) ([]byte, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != contentType {
		httpError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("send the %s as Content-Type: %s", what, contentType))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOfferBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s larger than %d KiB", what, maxOfferBytes>>10))
		return nil, false
	case err != nil:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("reading the %s: %v", what, err))
		return nil, false
	}
	return body, true
}

// checkOffer parses the offer enough to give a precise error before pion is involved, and
// returns its ICE username fragment (session- or media-level: OBS sends it at session
// level). Each codec in need (a MIME type) must be offered; H.264 in packetization mode 1.
func checkOffer(body []byte, needKind string, need []string) (string, error) {
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(string(body)); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	ufrag, _ := desc.Attribute("ice-ufrag")
	offered := map[string]bool{} // lower-case MIME types, "video/h264" only with mode 1
	hasKind := false
	for _, m := range desc.MediaDescriptions {
		if m.MediaName.Media == needKind {
			hasKind = true
		}
		if u, ok := m.Attribute("ice-ufrag"); ok && ufrag == "" {
			ufrag = u
		}
		codecs := map[string]string{} // payload type → MIME type
		for _, a := range m.Attributes {
			if pt, enc, ok := strings.Cut(a.Value, " "); a.Key == "rtpmap" && ok {
				name, _, _ := strings.Cut(enc, "/")
				codecs[pt] = strings.ToLower(m.MediaName.Media + "/" + name)
			}
		}
		for pt, c := range codecs {
			if c != "video/h264" {
				offered[c] = true
				continue
			}
			for _, a := range m.Attributes {
				if p, params, ok := strings.Cut(a.Value, " "); a.Key == "fmtp" && ok && p == pt && strings.Contains(params, "packetization-mode=1") {
					offered[c] = true
				}
			}
			offered["video/h264-any"] = true
		}
	}
	if !hasKind {
		return "", fmt.Errorf("%w: no %s media section", ErrBadOffer, needKind)
	}
	for _, c := range need {
		c = strings.ToLower(c)
		switch {
		case offered[c]:
		case c == "video/h264" && offered["video/h264-any"]:
			return "", fmt.Errorf("%w: the offer's H.264 lacks packetization-mode=1, which this stream needs", ErrBadOffer)
		case c == "video/h264":
			return "", fmt.Errorf("%w: the offer has no H.264 codec; this stream is H.264 (constrained baseline)", ErrBadOffer)
		default:
			return "", fmt.Errorf("%w: the offer cannot receive %s, which this stream sends", ErrBadOffer, c)
		}
	}
	if ufrag == "" {
		return "", fmt.Errorf("%w: no ice-ufrag", ErrBadOffer)
	}
	return ufrag, nil
}

// answer applies a remote offer and returns the local answer with every host candidate in
// it, so a client needs no trickle from us.
func answer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	return finishAnswer(ctx, pc)
}

// finishAnswer creates and applies the answer once the offer is set and the tracks added.
func finishAnswer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		if errors.Is(err, webrtc.ErrUnsupportedCodec) {
			return "", fmt.Errorf("%w: no codec in the offer that this stream can send: %v", ErrBadOffer, err)
		}
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(3 * time.Second):
	}
	return pc.LocalDescription().SDP, nil
}

// watch ends the session when its connection fails, closes or never comes up, and calls
// connected once when it is up.
func (s *Server) watch(sess *session, connected func()) {
	up := make(chan struct{})
	var once sync.Once
	sess.pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		switch state {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() {
				close(up)
				if connected != nil {
					connected()
				}
			})
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.endSession(sess, "connection "+state.String())
		}
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-up:
		case <-s.closing:
		case <-time.After(connectTimeout):
			s.endSession(sess, "did not connect within "+connectTimeout.String())
		}
	}()
}

// endSession closes a session once, whoever notices first.
func (s *Server) endSession(sess *session, why string) {
	sess.closeOnce.Do(func() {
		s.mu.Lock()
		delete(s.sessions, sess.id)
		sub, pub, pc := sess.sub, sess.pub, sess.pc
		s.mu.Unlock()
		if sub != nil {
			sub.close()
		}
		if pub != nil {
			pub.close()
		}
		if sess.participant != nil {
			if r := s.existingRoom(sess.room); r != nil {
				r.Leave(sess.participant, why)
			}
		}
		if pc != nil {
			// Close blocks until pion's goroutines stop; never on a pion callback's stack.
			s.wg.Add(1)
			go func() { defer s.wg.Done(); _ = pc.Close() }()
		}
		s.log.Info(sess.kind+" session ended", "room", sess.room, "session", sess.id, "reason", why, "viewers", s.Viewers())
		s.releaseWhenIdle()
	})
}

// idleRelease is how long the server must have had nobody connected before it hands freed
// memory back to the system.
const idleRelease = 5 * time.Second

// releaseWhenIdle returns the memory of the sessions that ended to the system once nobody
// has been connected for idleRelease: the Go runtime would otherwise keep it for minutes,
// and on a small board the daemon's footprint between calls is what matters.
func (s *Server) releaseWhenIdle() {
	if s.Viewers() > 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.releaseTimer != nil {
		s.releaseTimer.Reset(idleRelease)
		return
	}
	s.releaseTimer = time.AfterFunc(idleRelease, func() {
		s.mu.Lock()
		s.releaseTimer = nil
		s.mu.Unlock()
		if s.Viewers() == 0 {
			// Two collections: the first only moves sync.Pool contents (pion's packet
			// buffers of every ended session) to the pools' victim caches, the second
			// frees them; FreeOSMemory's own collection then hands the pages back.
			runtime.GC()
			debug.FreeOSMemory()
		}
	})
}

// session finds the session of a /sessions/{id} request, checking that the token may act on it.
func (s *Server) session(w http.ResponseWriter, r *http.Request) *session {
	s.mu.Lock()
	sess := s.sessions[r.PathValue("id")]
	s.mu.Unlock()
	if sess == nil {
		httpError(w, http.StatusNotFound, ErrNoSession.Error())
		return nil
	}
	need := token.GrantSubscribe
	if sess.kind == "whip" {
		need = token.GrantPublish
	}
	if _, ok := s.authorize(w, r, sess.room, need); !ok {
		return nil
	}
	return sess
}

// handleSessionDelete ends a WHIP or WHEP session.
func (s *Server) handleSessionDelete(w http.ResponseWriter, r *http.Request) {
	if sess := s.session(w, r); sess != nil {
		s.endSession(sess, "client ended it")
		w.WriteHeader(http.StatusOK)
	}
}

// handleSessionPatch takes trickled ICE candidates from the client (RFC 8840 fragments).
func (s *Server) handleSessionPatch(w http.ResponseWriter, r *http.Request) {
	sess := s.session(w, r)
	if sess == nil {
		return
	}
	body, ok := readBody(w, r, "application/trickle-ice-sdpfrag", "ICE fragment")
	if !ok {
		return
	}
	candidates, ufrag := parseTrickle(string(body))
	if ufrag != "" && ufrag != sess.ufrag {
		httpError(w, http.StatusUnprocessableEntity, "ICE restart is not supported: end this session and POST a new offer")
		return
	}
	for _, c := range candidates {
		if err := sess.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c}); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("bad candidate %q: %v", c, err))
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// handlePreflight answers browsers' CORS preflight for WHIP, WHEP and their sessions, with
// the ICE servers as Link headers (RFC 9725).
func (s *Server) handlePreflight(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusNoContent)
}

// parseTrickle pulls candidate lines and the ICE username fragment out of an SDP fragment.
func parseTrickle(frag string) (candidates []string, ufrag string) {
	for line := range strings.Lines(frag) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=candidate:"):
			candidates = append(candidates, strings.TrimPrefix(line, "a="))
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		}
	}
	return candidates, ufrag
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// created answers a WHIP or WHEP POST: 201 with the session's Location and the answer.
func (s *Server) created(w http.ResponseWriter, sess *session, identity, answer string) {
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/sessions/"+sess.id)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	if links := s.linkHeaders(identity); len(links) > 0 {
		h["Link"] = links
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}
