package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/edge/turn"
	"github.com/edgeflux/edge/internal/token"
)

const (
	joinTimeout = 5 * time.Second  // the first message must come this soon
	idleTimeout = 30 * time.Second // a client sends at least a ping this often
	rateLimit   = 50               // messages per second, with a burst of as many
	outQueue    = 256              // messages queued to a slow client before it is dropped
)

// rtcClient is one meeting participant on the WebSocket room protocol. Everything that
// changes its state runs on its own goroutine (run), fed by the reader and by the room.
type rtcClient struct {
	srv         *Server
	conn        *websocket.Conn
	claims      token.Claims
	room        *sfu.Room
	participant *sfu.Participant

	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
	tasks  chan func()

	// owned by run
	pubPC, subPC          *webrtc.PeerConnection
	pub                   *publisher
	sub                   *subscriber
	negotiating, renegoti bool
	mids                  map[string]string // subscribe connection: mid → track id
	quality               map[string]sfu.Quality

	endOnce sync.Once
}

// handleRTC upgrades to the room protocol. The token comes in the first message, so the
// upgrade itself needs none; any origin may connect, as with CORS: tokens, not cookies,
// protect the rooms.
func (s *Server) handleRTC(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	conn.SetReadLimit(maxMessageBytes)
	ctx, cancel := context.WithCancel(context.Background())
	c := &rtcClient{srv: s, conn: conn, ctx: ctx, cancel: cancel, out: make(chan []byte, outQueue), tasks: make(chan func(), 1024),
		mids: map[string]string{}, quality: map[string]sfu.Quality{}}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); c.serve() }()
}

func (c *rtcClient) serve() {
	defer c.conn.CloseNow()
	join, err := c.readJoin()
	if err != nil {
		c.writeNow(map[string]any{"type": "error", "code": codeOf(err), "message": err.Error()})
		c.conn.Close(websocket.StatusPolicyViolation, "join failed")
		return
	}
	if err := c.join(join); err != nil {
		c.writeNow(map[string]any{"type": "error", "code": codeOf(err), "message": err.Error()})
		c.conn.Close(websocket.StatusPolicyViolation, "join failed")
		return
	}
	c.srv.wg.Add(2)
	go func() { defer c.srv.wg.Done(); c.write() }()
	go func() { defer c.srv.wg.Done(); c.read() }()
	c.run()
}

type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

func codeOf(err error) int {
	var ce codedError
	switch {
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, token.ErrWrongRoom), errors.Is(err, token.ErrForbidden):
		return 403
	case errors.Is(err, errBadMessage):
		return 400
	}
	return 401
}

func (c *rtcClient) readJoin() (clientMessage, error) {
	ctx, cancel := context.WithTimeout(c.ctx, joinTimeout)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		return clientMessage{}, codedError{400, fmt.Errorf("no join message within %s: %v", joinTimeout, err)}
	}
	m, err := parseClientMessage(b)
	if err != nil {
		return m, err
	}
	if m.Type != "join" {
		return m, codedError{400, fmt.Errorf("%w: the first message must be join, not %s", errBadMessage, m.Type)}
	}
	return m, nil
}

func (c *rtcClient) join(m clientMessage) error {
	s := c.srv
	claims, err := s.verify(m.Token)
	if err != nil {
		s.metrics.authFailures.Add(1)
		return err
	}
	if claims.Room == token.AnyRoom {
		claims.Room = s.cfg.DefaultRoom
	}
	if err := claims.Allows(claims.Room, 0); err != nil {
		return err
	}
	if claims.Grants.Mask()&(token.GrantPublish|token.GrantSubscribe) == 0 {
		return fmt.Errorf("%w: joining a room needs publish or subscribe", token.ErrForbidden)
	}
	c.claims = claims
	c.room = s.Room(claims.Room)
	if limit := s.maxParticipants(); c.room.Len() >= limit && c.room.Participant(claims.Identity) == nil {
		return codedError{429, fmt.Errorf("room %q is full (%d participants)", claims.Room, limit)}
	}
	name := claims.Name
	if m.Name != "" {
		name = m.Name
	}
	var sub sfu.Subscriber
	if claims.Grants.Subscribe {
		sub = c
		pc, err := s.apis.subscribe.NewPeerConnection(s.apis.config())
		if err != nil {
			return codedError{500, err}
		}
		c.subPC = pc
		c.sub = newSubscriber(s, claims.Identity, pc)
		c.sub.onLayer = func(d *sfu.DownTrack, l *sfu.Layer) {
			c.post(func() {
				c.send(map[string]any{"type": "layer", "track_id": d.ID(), "quality": l.Quality.String(), "width": l.Width, "height": l.Height})
			})
		}
		c.watch(pc, "subscribe", c.sub.connected)
	}
	c.participant = sfu.NewParticipant(claims.Identity, name, sub)
	others := []map[string]any{}
	for _, p := range c.room.Participants() {
		if p.ID != claims.Identity {
			others = append(others, participantJSON(p.Info()))
		}
	}
	s.mu.Lock()
	s.clients[c] = struct{}{}
	s.mu.Unlock()
	c.send(map[string]any{
		"type": "joined", "room": claims.Room, "participant": participantJSON(c.participant.Info()),
		"participants": others, "ice_servers": nonNil(s.cfg.ICEServers(claims.Identity)),
	})
	if replaced := c.room.Join(c.participant); replaced != nil {
		s.endParticipant(replaced, "replaced")
	}
	s.metrics.joins.Add(1)
	return nil
}

func nonNil(ice []turn.ICEServer) []turn.ICEServer {
	if ice == nil {
		return []turn.ICEServer{}
	}
	return ice
}

// watch ends the client when one of its connections fails or the client closes it.
func (c *rtcClient) watch(pc *webrtc.PeerConnection, which string, connected func()) {
	var once sync.Once
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		switch state {
		case webrtc.PeerConnectionStateConnected:
			if connected != nil {
				once.Do(connected)
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			// Closed without our asking means the client's DTLS said goodbye.
			c.post(func() { c.end(which + " connection " + state.String()) })
		}
	})
}

// post runs f on the client's goroutine; a client too far behind is dropped.
func (c *rtcClient) post(f func()) {
	select {
	case c.tasks <- f:
	case <-c.ctx.Done():
	default:
		go c.end("too slow")
	}
}

// send queues a message for the client.
func (c *rtcClient) send(msg map[string]any) {
	b, err := json.Marshal(msg)
	if err != nil {
		return
	}
	select {
	case c.out <- b:
	case <-c.ctx.Done():
	default:
		go c.end("too slow")
	}
}

func (c *rtcClient) writeNow(msg map[string]any) {
	b, _ := json.Marshal(msg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.conn.Write(ctx, websocket.MessageText, b)
}

func (c *rtcClient) write() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case b := <-c.out:
			ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
			err := c.conn.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				go c.end("write failed")
				return
			}
		}
	}
}

// read parses messages and hands them to run, enforcing the rate limit and idle timeout.
func (c *rtcClient) read() {
	tokens, last := float64(rateLimit), time.Now()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, idleTimeout)
		_, b, err := c.conn.Read(ctx)
		cancel()
		if err != nil {
			reason := "closed"
			if errors.Is(err, context.DeadlineExceeded) {
				reason = "timeout"
			}
			c.post(func() { c.end(reason) })
			return
		}
		now := time.Now()
		tokens = min(rateLimit, tokens+now.Sub(last).Seconds()*rateLimit)
		last = now
		if tokens < 1 {
			c.srv.metrics.badMessages.Add(1)
			c.send(map[string]any{"type": "error", "code": 429, "message": fmt.Sprintf("more than %d messages per second", rateLimit)})
			continue
		}
		tokens--
		m, err := parseClientMessage(b)
		if err != nil {
			c.srv.metrics.badMessages.Add(1)
			c.send(map[string]any{"type": "error", "code": 400, "message": err.Error()})
			continue
		}
		c.post(func() { c.handle(m) })
	}
}

func (c *rtcClient) run() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case f := <-c.tasks:
			f()
		}
	}
}

func (c *rtcClient) fail(code int, format string, args ...any) {
	c.send(map[string]any{"type": "error", "code": code, "message": fmt.Sprintf(format, args...)})
}

// handle acts on one client message, on the client's goroutine.
func (c *rtcClient) handle(m clientMessage) {
	switch m.Type {
	case "join":
		c.fail(409, "already joined")
	case "ping":
		c.send(map[string]any{"type": "pong", "t": m.T})
	case "leave":
		c.end("left")
	case "publish_offer":
		c.publishOffer(m)
	case "subscribe_answer":
		if c.subPC == nil || !c.negotiating {
			c.fail(409, "no subscribe offer is waiting for an answer")
			return
		}
		if err := c.subPC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			c.fail(400, "subscribe answer: %v", err)
			c.end("bad answer")
			return
		}
		c.negotiating = false
		if c.renegoti {
			c.renegoti = false
			c.negotiate()
		}
	case "candidate":
		pc := c.pubPC
		if m.Target == "subscribe" {
			pc = c.subPC
		}
		if pc == nil {
			c.fail(409, "no %s connection", m.Target)
			return
		}
		if m.Candidate == nil {
			return // end of candidates
		}
		if err := pc.AddICECandidate(*m.Candidate); err != nil {
			c.fail(400, "bad candidate: %v", err)
		}
	case "subscription":
		c.subscription(m)
	case "mute":
		t := c.participant.Track(m.TrackID)
		if t == nil {
			if c.pub == nil || !c.pub.muteDeclared(m.TrackID, *m.Muted) {
				c.fail(404, "you publish no track %q", m.TrackID)
			}
			return
		}
		c.room.SetMuted(c.participant, t, *m.Muted)
	}
}

func (c *rtcClient) publishOffer(m clientMessage) {
	if !c.claims.Grants.Publish {
		c.fail(403, "your token does not allow publishing")
		return
	}
	if c.pubPC == nil {
		pc, err := c.srv.apis.publish.NewPeerConnection(c.srv.apis.config())
		if err != nil {
			c.fail(500, "publish connection: %v", err)
			return
		}
		c.pubPC = pc
		c.pub = newPublisher(c.srv, c.room, c.participant, pc)
		c.pub.onActiveLayers = func(t *sfu.Track, active []*sfu.Layer) {
			rids := []string{}
			for _, l := range active {
				rids = append(rids, l.RID)
			}
			c.post(func() { c.send(map[string]any{"type": "publish_layers", "track_id": t.ID, "active": rids}) })
		}
		c.watch(pc, "publish", nil)
	}
	ids := map[string]string{} // mid → track id: the client names its own tracks in mute
	for _, t := range m.Tracks {
		c.pub.declare(t.Mid, t.Source)
		ids[t.Mid] = publishedTrackID(c.participant.ID, t.Mid)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	ans, err := answer(ctx, c.pubPC, m.SDP)
	if err != nil {
		c.fail(400, "publish offer: %v", err)
		return
	}
	c.send(map[string]any{"type": "publish_answer", "sdp": ans, "tracks": ids})
}

func (c *rtcClient) subscription(m clientMessage) {
	if c.sub == nil {
		c.fail(403, "your token does not allow subscribing")
		return
	}
	var track *sfu.Track
	for _, p := range c.room.Participants() {
		if t := p.Track(m.TrackID); t != nil && p != c.participant {
			track = t
		}
	}
	if track == nil {
		c.fail(404, "no track %q in this room", m.TrackID)
		return
	}
	q := qualityFor(track, m.Quality, m.MaxWidth, m.MaxHeight)
	c.quality[track.ID] = q
	d := c.sub.down(track.ID)
	switch {
	case !*m.Subscribed:
		if c.sub.remove(track.ID) {
			c.negotiate()
		}
	case d == nil:
		c.subscribe(track)
	default:
		d.SetMaxQuality(q)
	}
}

// subscribe adds a track to the subscribe connection and renegotiates.
func (c *rtcClient) subscribe(t *sfu.Track) {
	if c.sub == nil {
		return
	}
	tr, err := c.sub.add(t)
	if err != nil {
		c.fail(500, "subscribe %s: %v", t.ID, err)
		return
	}
	if tr == nil {
		return
	}
	if q, ok := c.quality[t.ID]; ok {
		c.sub.down(t.ID).SetMaxQuality(q)
	}
	c.negotiate()
}

// negotiate sends a new subscribe offer, or marks one as due when an answer is awaited.
func (c *rtcClient) negotiate() {
	if c.negotiating {
		c.renegoti = true
		return
	}
	offer, err := c.subPC.CreateOffer(nil)
	if err != nil {
		c.fail(500, "subscribe offer: %v", err)
		return
	}
	gathered := webrtc.GatheringCompletePromise(c.subPC)
	if err := c.subPC.SetLocalDescription(offer); err != nil {
		c.fail(500, "subscribe offer: %v", err)
		return
	}
	select {
	case <-gathered:
	case <-time.After(3 * time.Second):
	}
	tracks := map[string]string{}
	for _, tr := range c.subPC.GetTransceivers() {
		if s := tr.Sender(); s != nil && s.Track() != nil && tr.Mid() != "" {
			tracks[tr.Mid()] = s.Track().ID()
		}
	}
	c.negotiating = true
	c.send(map[string]any{"type": "subscribe_offer", "sdp": c.subPC.LocalDescription().SDP, "tracks": tracks})
}

// TrackPublished implements sfu.Subscriber: subscribe to everything by default.
func (c *rtcClient) TrackPublished(t *sfu.Track) {
	c.post(func() {
		c.send(map[string]any{"type": "track_published", "participant_id": t.Participant, "track": trackJSON(t)})
		c.subscribe(t)
	})
}

// TrackUnpublished implements sfu.Subscriber.
func (c *rtcClient) TrackUnpublished(t *sfu.Track) {
	c.post(func() {
		c.send(map[string]any{"type": "track_unpublished", "participant_id": t.Participant, "track_id": t.ID})
		if c.sub != nil && c.sub.remove(t.ID) {
			c.negotiate()
		}
	})
}

// Event implements sfu.Subscriber.
func (c *rtcClient) Event(e sfu.Event) {
	c.post(func() {
		switch e.Kind {
		case sfu.ParticipantJoined:
			c.send(map[string]any{"type": "participant_joined", "participant": participantJSON(e.Participant)})
		case sfu.ParticipantLeft:
			c.send(map[string]any{"type": "participant_left", "participant_id": e.Participant.ID, "reason": e.Reason})
		case sfu.TrackMuted:
			c.send(map[string]any{"type": "track_muted", "participant_id": e.Participant.ID, "track_id": e.Track.ID, "muted": e.Track.Muted()})
		case sfu.SpeakersChanged:
			list := []map[string]any{}
			for _, sp := range e.Speakers {
				list = append(list, map[string]any{"participant_id": sp.ParticipantID, "level": sp.Level})
			}
			c.send(map[string]any{"type": "speakers", "speakers": list})
		}
	})
}

// end leaves the room and closes everything, once.
func (c *rtcClient) end(reason string) {
	c.endOnce.Do(func() {
		c.writeNow(map[string]any{"type": "leave", "reason": reason})
		c.cancel()
		s := c.srv
		s.mu.Lock()
		delete(s.clients, c)
		s.mu.Unlock()
		defer s.releaseWhenIdle()
		if c.room != nil && c.participant != nil {
			c.room.Leave(c.participant, reason)
		}
		if c.pub != nil {
			c.pub.close()
		}
		if c.sub != nil {
			c.sub.close()
		}
		for _, pc := range []*webrtc.PeerConnection{c.pubPC, c.subPC} {
			if pc != nil {
				s.wg.Add(1)
				go func() { defer s.wg.Done(); _ = pc.Close() }()
			}
		}
		c.conn.Close(websocket.StatusNormalClosure, reason)
	})
}
