package edge

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/internal/token"
)

// handleWHEPOffer starts a viewer of one participant's tracks: POST /whep/{room}/{participant},
// or /whep/{stream} for a participant of the default room (/whep/camera). RFC 9725 style:
// 201 with Location and the answer.
func (s *Server) handleWHEPOffer(w http.ResponseWriter, r *http.Request) {
	roomName, name := r.PathValue("room"), r.PathValue("participant")
	if name == "" {
		roomName, name = s.cfg.DefaultRoom, r.PathValue("stream")
	}
	claims, ok := s.authorize(w, r, roomName, token.GrantSubscribe)
	if !ok {
		return
	}
	var tracks []*sfu.Track
	if room := s.existingRoom(roomName); room != nil {
		if p := room.Participant(name); p != nil {
			tracks = p.Tracks()
		}
	}
	if len(tracks) == 0 {
		httpError(w, http.StatusNotFound, fmt.Sprintf("%v: %q publishes nothing in room %q", ErrNoStream, name, roomName))
		return
	}
	body, ok := readBody(w, r, "application/sdp", "SDP offer")
	if !ok {
		return
	}
	var need []string
	for _, t := range tracks {
		if t.Kind == webrtc.RTPCodecTypeVideo {
			need = append(need, t.Codec.MimeType)
		}
	}
	ufrag, err := checkOffer(body, "video", need)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if name == CameraID && roomName == s.cfg.DefaultRoom {
		if st := s.cfg.Status(); !st.Live && !st.Starting {
			w.Header().Set("Retry-After", "2")
			httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("%v: %s", ErrStreamDown, st.Error))
			return
		}
	}
	sess := &session{id: newID(), kind: "whep", room: roomName, ufrag: ufrag}
	s.mu.Lock()
	if n := s.countSessions("whep"); n >= s.cfg.MaxViewers {
		s.mu.Unlock()
		w.Header().Set("Retry-After", "10")
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("%v (%d); try again later", ErrTooManyViews, s.cfg.MaxViewers))
		return
	}
	s.sessions[sess.id] = sess // reserve the slot before the slow part
	s.mu.Unlock()

	ans, err := s.startViewer(r, sess, tracks, string(body))
	switch {
	case errors.Is(err, ErrBadOffer):
		s.endSession(sess, "bad offer")
		httpError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.endSession(sess, "setup failed")
		s.log.Error("whep session failed", "room", roomName, "participant", name, "err", err)
		httpError(w, http.StatusInternalServerError, "could not create session: "+err.Error())
		return
	}
	s.metrics.whepSessions.Add(1)
	s.log.Info("viewer joined", "room", roomName, "participant", name, "session", sess.id, "identity", claims.Identity, "remote", r.RemoteAddr, "viewers", s.Viewers())
	s.created(w, sess, claims.Identity, ans)
}

func (s *Server) startViewer(r *http.Request, sess *session, tracks []*sfu.Track, offer string) (string, error) {
	pc, err := s.apis.subscribe.NewPeerConnection(s.apis.config())
	if err != nil {
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	// The session is already listed (its slot reserved): set its parts under the lock that
	// Viewers and endSession read them under, unless it was ended meanwhile.
	s.mu.Lock()
	if s.sessions[sess.id] != sess {
		s.mu.Unlock()
		_ = pc.Close()
		return "", errors.New("session ended while it was set up")
	}
	sess.pc, sess.sub = pc, newSubscriber(s, sess.id, pc)
	s.mu.Unlock()
	// Match the offer's receive-only sections in order: add each track to the next free
	// transceiver of its kind, so a client offering audio+video gets both.
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	for _, t := range tracks {
		if err := sess.sub.attach(t); err != nil {
			return "", err
		}
	}
	s.watch(sess, sess.sub.connected)
	return finishAnswer(r.Context(), pc)
}

// countSessions counts sessions of a kind; s.mu is held.
func (s *Server) countSessions(kind string) int {
	n := 0
	for _, sess := range s.sessions {
		if sess.kind == kind {
			n++
		}
	}
	return n
}
