package edge

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/internal/token"
)

// handleWHIPOffer takes a publisher into a room: POST /whip/{room} (RFC 9725). The token's
// identity becomes the participant; a second publisher with the same identity replaces the
// first, as a restarted encoder should.
func (s *Server) handleWHIPOffer(w http.ResponseWriter, r *http.Request) {
	roomName := r.PathValue("room")
	claims, ok := s.authorize(w, r, roomName, token.GrantPublish)
	if !ok {
		return
	}
	body, ok := readBody(w, r, "application/sdp", "SDP offer")
	if !ok {
		return
	}
	ufrag, err := checkOffer(body, "video", nil)
	if err != nil {
		if _, aerr := checkOffer(body, "audio", nil); aerr != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		ufrag, _ = checkOffer(body, "audio", nil)
	}
	room := s.Room(roomName)
	if limit := s.maxParticipants(); room.Len() >= limit && room.Participant(claims.Identity) == nil {
		w.Header().Set("Retry-After", "10")
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("room %q is full (%d participants)", roomName, limit))
		return
	}
	pc, err := s.apis.publish.NewPeerConnection(s.apis.config())
	if err != nil {
		httpError(w, http.StatusInternalServerError, "could not create session: "+err.Error())
		return
	}
	p := sfu.NewParticipant(claims.Identity, claims.Name, nil)
	sess := &session{id: newID(), kind: "whip", room: roomName, ufrag: ufrag, pc: pc, participant: p}
	sess.pub = newPublisher(s, room, p, pc)
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	ans, err := answer(r.Context(), pc, string(body))
	if err != nil {
		s.endSession(sess, "setup failed")
		code := http.StatusInternalServerError
		if errors.Is(err, ErrBadOffer) {
			code = http.StatusBadRequest
		}
		httpError(w, code, err.Error())
		return
	}
	if replaced := room.Join(p); replaced != nil {
		s.endParticipant(replaced, "replaced")
	}
	s.watch(sess, nil)
	s.metrics.whipSessions.Add(1)
	s.log.Info("publisher joined", "room", roomName, "participant", p.ID, "session", sess.id, "remote", r.RemoteAddr)
	s.created(w, sess, claims.Identity, ans)
}

// endParticipant ends whatever session a participant replaced by a newer one had.
func (s *Server) endParticipant(p *sfu.Participant, why string) {
	s.mu.Lock()
	var found *session
	for _, sess := range s.sessions {
		if sess.participant == p {
			found = sess
		}
	}
	var client *rtcClient
	for c := range s.clients {
		if c.participant == p {
			client = c
		}
	}
	s.mu.Unlock()
	if found != nil {
		s.endSession(found, why)
	}
	if client != nil {
		client.end(why)
	}
}
