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
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// maxOfferBytes bounds an SDP offer; real offers are a few KiB.
const maxOfferBytes = 64 << 10

// connectTimeout is how long a session may take to connect before it is dropped: a client
// that posted an offer and vanished must not hold a viewer slot.
const connectTimeout = 20 * time.Second

// whepSession is one viewer, created by a POST and ended by DELETE or by its connection failing.
type whepSession struct {
	id       string
	stream   string
	pc       *webrtc.PeerConnection
	down     *downTrack
	ufrag    string
	closeOne sync.Once

	estimate int     // latest REMB, bit/s; owned by readRTCP
	loss     float64 // latest receiver-report loss fraction; owned by readRTCP
}

// handleWHEPOffer creates a session: RFC 9725 style, 201 with Location and the answer.
func (s *Server) handleWHEPOffer(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	track := s.track(name)
	if track == nil {
		httpError(w, http.StatusNotFound, fmt.Sprintf("%v: %q (streams: camera)", ErrNoStream, name))
		return
	}
	body, ok := readBody(w, r, "application/sdp", "SDP offer")
	if !ok {
		return
	}
	ufrag, err := checkOffer(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if st := s.cfg.Status(); !st.Live && !st.Starting {
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, fmt.Sprintf("%v: %s", ErrStreamDown, st.Error))
		return
	}
	sess, answer, err := s.newSession(r.Context(), name, track, string(body))
	switch {
	case errors.Is(err, ErrTooManyViews):
		w.Header().Set("Retry-After", "10")
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	case errors.Is(err, ErrBadOffer):
		httpError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.log.Error("whep session failed", "stream", name, "err", err)
		httpError(w, http.StatusInternalServerError, "could not create session: "+err.Error())
		return
	}
	sess.ufrag = ufrag
	s.log.Info("viewer joined", "stream", name, "session", sess.id, "remote", r.RemoteAddr, "viewers", s.Viewers())
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whep/"+name+"/sessions/"+sess.id)
	w.Header().Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
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
// returns its ICE username fragment (session- or media-level: OBS sends it at session level).
func checkOffer(body []byte) (string, error) {
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(string(body)); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	ufrag, _ := desc.Attribute("ice-ufrag")
	hasVideo, hasH264, hasMode1 := false, false, false
	for _, m := range desc.MediaDescriptions {
		if m.MediaName.Media != "video" {
			continue
		}
		hasVideo = true
		if u, ok := m.Attribute("ice-ufrag"); ok && ufrag == "" {
			ufrag = u
		}
		h264 := map[string]bool{} // payload types mapped to H.264
		for _, a := range m.Attributes {
			if pt, codec, ok := strings.Cut(a.Value, " "); a.Key == "rtpmap" && ok && strings.EqualFold(codec, "H264/90000") {
				h264[pt] = true
				hasH264 = true
			}
		}
		for _, a := range m.Attributes {
			if pt, params, ok := strings.Cut(a.Value, " "); a.Key == "fmtp" && ok && h264[pt] &&
				strings.Contains(params, "packetization-mode=1") {
				hasMode1 = true
			}
		}
	}
	switch {
	case !hasVideo:
		return "", fmt.Errorf("%w: no video media section; a WHEP offer for this stream must receive video", ErrBadOffer)
	case !hasH264:
		return "", fmt.Errorf("%w: the offer has no H.264 codec; this stream is H.264 (constrained baseline)", ErrBadOffer)
	case !hasMode1:
		return "", fmt.Errorf("%w: the offer's H.264 lacks packetization-mode=1, which this stream needs", ErrBadOffer)
	case ufrag == "":
		return "", fmt.Errorf("%w: no ice-ufrag", ErrBadOffer)
	}
	return ufrag, nil
}

func (s *Server) newSession(ctx context.Context, stream string, track *Track, offer string) (*whepSession, string, error) {
	s.mu.Lock()
	if len(s.sessions) >= s.cfg.MaxViewers {
		s.mu.Unlock()
		return nil, "", fmt.Errorf("%w (%d); try again later", ErrTooManyViews, s.cfg.MaxViewers)
	}
	sess := &whepSession{id: newID(), stream: stream, down: newDownTrack(track)}
	s.sessions[sess.id] = sess // reserve the slot before the slow part
	s.mu.Unlock()

	answer, err := s.negotiate(ctx, sess, offer)
	if err != nil {
		s.endSession(sess, "setup failed")
		return nil, "", err
	}
	return sess, answer, nil
}

func (s *Server) negotiate(ctx context.Context, sess *whepSession, offer string) (string, error) {
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	sess.pc = pc
	sender, err := pc.AddTrack(sess.down)
	if err != nil {
		return "", fmt.Errorf("add track: %w", err)
	}
	connected := make(chan struct{})
	var connectedOnce sync.Once
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		switch state {
		case webrtc.PeerConnectionStateConnected:
			connectedOnce.Do(func() {
				close(connected)
				sess.down.connected()
			})
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.endSession(sess, "connection "+state.String())
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		if errors.Is(err, webrtc.ErrUnsupportedCodec) {
			return "", fmt.Errorf("%w: no codec in the offer that this stream can send: %v", ErrBadOffer, err)
		}
		return "", fmt.Errorf("set local description: %w", err)
	}
	// Host candidates gather in milliseconds; the answer carries them all, so the client
	// needs no trickle from us.
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(3 * time.Second):
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.readRTCP(sess, sender) }()
	go func() {
		defer s.wg.Done()
		select {
		case <-connected:
		case <-s.closing:
		case <-time.After(connectTimeout):
			s.endSession(sess, "did not connect within "+connectTimeout.String())
		}
	}()
	return pc.LocalDescription().SDP, nil
}

// readRTCP serves one viewer's feedback until its connection ends.
func (s *Server) readRTCP(sess *whepSession, sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		nacked, resent := sess.down.handleRTCP(pkts)
		s.nacks.Add(uint64(nacked))
		s.retransmits.Add(uint64(resent))
		if sess.congestion(pkts) && s.cfg.ViewerFeedback != nil {
			s.cfg.ViewerFeedback(sess.id, sess.estimate, sess.loss)
		}
	}
}

// congestion takes the viewer's bandwidth estimate (REMB) and loss (receiver report) from
// a compound RTCP packet and reports whether either was there.
func (sess *whepSession) congestion(pkts []rtcp.Packet) bool {
	found := false
	for _, pkt := range pkts {
		switch pkt := pkt.(type) {
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			sess.estimate, found = int(pkt.Bitrate), true
		case *rtcp.ReceiverReport:
			for _, r := range pkt.Reports {
				sess.loss, found = float64(r.FractionLost)/256, true
			}
		}
	}
	return found
}

// endSession closes a session once, whoever notices first.
func (s *Server) endSession(sess *whepSession, why string) {
	sess.closeOne.Do(func() {
		s.mu.Lock()
		delete(s.sessions, sess.id)
		n := len(s.sessions)
		s.mu.Unlock()
		if sess.pc != nil {
			// Close blocks until pion's goroutines stop; never on a pion callback's stack.
			s.wg.Add(1)
			go func() { defer s.wg.Done(); _ = sess.pc.Close() }()
		}
		if s.cfg.ViewerLeft != nil {
			s.cfg.ViewerLeft(sess.id)
		}
		s.log.Info("viewer left", "stream", sess.stream, "session", sess.id, "reason", why, "viewers", n)
	})
}

func (s *Server) session(r *http.Request) *whepSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[r.PathValue("id")]
	if sess == nil || sess.stream != r.PathValue("stream") {
		return nil
	}
	return sess
}

// handleWHEPDelete ends a session.
func (s *Server) handleWHEPDelete(w http.ResponseWriter, r *http.Request) {
	sess := s.session(r)
	if sess == nil {
		httpError(w, http.StatusNotFound, ErrNoSession.Error())
		return
	}
	s.endSession(sess, "client ended it")
	w.WriteHeader(http.StatusOK)
}

// handleWHEPPatch takes trickled ICE candidates from the client (RFC 8840 fragments).
func (s *Server) handleWHEPPatch(w http.ResponseWriter, r *http.Request) {
	sess := s.session(r)
	if sess == nil {
		httpError(w, http.StatusNotFound, ErrNoSession.Error())
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
