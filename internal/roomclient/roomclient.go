// Package roomclient is a participant of the edge's room protocol (docs/room-protocol.md)
// built on pion: it joins over the WebSocket, publishes tracks on its publish connection,
// answers the server's subscribe offers and counts what it receives. Tests and load tools
// use it as a real peer of the SFU; a link to a central node can speak the same protocol.
package roomclient

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Options says where to join and how.
type Options struct {
	URL   string // the room endpoint, e.g. ws://127.0.0.1:8080/rtc
	Token string
	// LoopbackOnly keeps every ICE candidate on the loopback interface, as tests on a shared
	// machine must. RelayOnly allows only TURN relay candidates (with the servers from the
	// joined message, or ICEServers when set).
	LoopbackOnly, RelayOnly bool
	ICEServers              []webrtc.ICEServer
}

// Message is one server message, decoded loosely for inspection.
type Message map[string]any

// Type is the message's type.
func (m Message) Type() string { s, _ := m["type"].(string); return s }

// Remote is a track received on the subscribe connection.
type Remote struct {
	TrackID, Participant string
	Kind                 webrtc.RTPCodecType
	Packets, Bytes       atomic.Uint64
	LastPacket           atomic.Pointer[rtp.Packet]
}

// Client is one joined participant.
type Client struct {
	opts   Options
	conn   *websocket.Conn
	api    *webrtc.API
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	Joined Message // the joined message

	mu       sync.Mutex
	messages []Message
	notify   chan struct{}
	pub, sub *webrtc.PeerConnection
	mids     map[string]string // subscribe connection: mid → track id
	remotes  map[string]*Remote
	ice      []webrtc.ICEServer
}

// Dial connects, joins and returns once the server answered joined.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	conn, _, err := websocket.Dial(ctx, opts.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("room: connect: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{opts: opts, conn: conn, ctx: cctx, cancel: cancel, notify: make(chan struct{}, 1),
		mids: map[string]string{}, remotes: map[string]*Remote{}}
	if c.api, err = newAPI(opts); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Send(Message{"type": "join", "token": opts.Token}); err != nil {
		c.Close()
		return nil, err
	}
	c.wg.Add(1)
	go c.read()
	joined, err := c.Wait(ctx, func(m Message) bool { return m.Type() == "joined" || m.Type() == "error" })
	if err != nil {
		c.Close()
		return nil, err
	}
	if joined.Type() == "error" {
		c.Close()
		return nil, fmt.Errorf("room: join refused: %v %v", joined["code"], joined["message"])
	}
	c.Joined = joined
	return c, nil
}

func newAPI(opts Options) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	if opts.LoopbackOnly {
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		se.SetIncludeLoopbackCandidate(true)
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

func iceServers(joined Message) []webrtc.ICEServer {
	b, _ := json.Marshal(joined["ice_servers"])
	var list []struct {
		URLs       []string `json:"urls"`
		Username   string   `json:"username"`
		Credential string   `json:"credential"`
	}
	_ = json.Unmarshal(b, &list)
	out := []webrtc.ICEServer{}
	for _, s := range list {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// pcConfig is the configuration of a new peer connection; c.mu is held.
func (c *Client) pcConfig() webrtc.Configuration {
	cfg := webrtc.Configuration{ICEServers: c.ice, BundlePolicy: webrtc.BundlePolicyMaxBundle}
	if c.opts.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return cfg
}

// Send writes one message.
func (c *Client) Send(m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.SendRaw(b)
}

// SendRaw writes bytes as one text message, malformed or not.
func (c *Client) SendRaw(b []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, b)
}

func (c *Client) read() {
	defer c.wg.Done()
	for {
		_, b, err := c.conn.Read(c.ctx)
		if err != nil {
			c.record(Message{"type": "closed", "error": err.Error()})
			return
		}
		var m Message
		if err := json.Unmarshal(b, &m); err != nil {
			continue
		}
		switch m.Type() {
		case "joined":
			// Before anything else is read: the subscribe offer follows at once and its
			// connection needs the ICE servers.
			c.mu.Lock()
			c.ice = c.opts.ICEServers
			if c.ice == nil {
				c.ice = iceServers(m)
			}
			c.mu.Unlock()
		}
		c.record(m)
		switch m.Type() {
		case "subscribe_offer":
			if err := c.answerSubscribe(m); err != nil {
				c.record(Message{"type": "client_error", "error": err.Error()})
			}
		}
	}
}

func (c *Client) record(m Message) {
	c.mu.Lock()
	c.messages = append(c.messages, m)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Messages returns every message received so far.
func (c *Client) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.messages...)
}

// Wait returns the first message (received before or after the call) that match accepts.
func (c *Client) Wait(ctx context.Context, match func(Message) bool) (Message, error) {
	return c.WaitAfter(ctx, 0, match)
}

// WaitAfter is Wait among the messages after the first skip ones.
func (c *Client) WaitAfter(ctx context.Context, skip int, match func(Message) bool) (Message, error) {
	for {
		msgs := c.Messages()
		for _, m := range msgs[min(skip, len(msgs)):] {
			if match(m) {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("room: waiting for a message: %w", ctx.Err())
		case <-c.notify:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Client) answerSubscribe(m Message) error {
	c.mu.Lock()
	if c.sub == nil {
		pc, err := c.api.NewPeerConnection(c.pcConfig())
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.sub = pc
		pc.OnTrack(c.receive)
	}
	sub := c.sub
	if tracks, ok := m["tracks"].(map[string]any); ok {
		for mid, id := range tracks {
			c.mids[mid], _ = id.(string)
		}
	}
	c.mu.Unlock()
	sdp, _ := m["sdp"].(string)
	if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return fmt.Errorf("subscribe offer: %w", err)
	}
	answer, err := sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(sub)
	if err := sub.SetLocalDescription(answer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
	}
	return c.Send(Message{"type": "subscribe_answer", "sdp": sub.LocalDescription().SDP})
}

func (c *Client) receive(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	mid := ""
	c.mu.Lock()
	for _, t := range c.sub.GetTransceivers() {
		if t.Receiver() == recv {
			mid = t.Mid()
		}
	}
	r := &Remote{TrackID: c.mids[mid], Participant: tr.StreamID(), Kind: tr.Kind()}
	if r.TrackID == "" {
		r.TrackID = tr.ID()
	}
	c.remotes[r.TrackID] = r
	c.mu.Unlock()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		r.Packets.Add(1)
		r.Bytes.Add(uint64(len(pkt.Payload)))
		r.LastPacket.Store(pkt)
	}
}

// Remotes returns the tracks received so far, by track id.
func (c *Client) Remotes() map[string]*Remote {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*Remote, len(c.remotes))
	for k, v := range c.remotes {
		out[k] = v
	}
	return out
}

// Publication is a track to publish with its declared source.
type Publication struct {
	Track  webrtc.TrackLocal
	Source string // camera, microphone or screen
}

// Publish offers the tracks on the publish connection and applies the server's answer.
func (c *Client) Publish(ctx context.Context, pubs ...Publication) error {
	c.mu.Lock()
	if c.pub == nil {
		pc, err := c.api.NewPeerConnection(c.pcConfig())
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.pub = pc
	}
	pc := c.pub
	c.mu.Unlock()
	var trs []*webrtc.RTPTransceiver
	for _, p := range pubs {
		tr, err := pc.AddTransceiverFromTrack(p.Track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return err
		}
		trs = append(trs, tr)
		go drainRTCP(tr.Sender())
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	}
	decl := []Message{}
	for i, tr := range trs {
		decl = append(decl, Message{"mid": tr.Mid(), "source": pubs[i].Source})
	}
	before := len(c.Messages())
	if err := c.Send(Message{"type": "publish_offer", "sdp": pc.LocalDescription().SDP, "tracks": decl}); err != nil {
		return err
	}
	answer, err := c.WaitAfter(ctx, before, func(m Message) bool { return m.Type() == "publish_answer" || m.Type() == "error" })
	if err != nil {
		return err
	}
	if answer.Type() == "error" {
		return fmt.Errorf("room: publish refused: %v %v", answer["code"], answer["message"])
	}
	sdp, _ := answer["sdp"].(string)
	return pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
}

// PublishConnection is the publish peer connection (nil before Publish).
func (c *Client) PublishConnection() *webrtc.PeerConnection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pub
}

// drainRTCP reads a sender's RTCP so pion's interceptors see it, until the sender closes.
func drainRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// Close leaves and closes both connections.
func (c *Client) Close() {
	_ = c.Send(Message{"type": "leave"})
	c.cancel()
	c.conn.CloseNow()
	c.mu.Lock()
	pcs := []*webrtc.PeerConnection{c.pub, c.sub}
	c.mu.Unlock()
	for _, pc := range pcs {
		if pc != nil {
			_ = pc.Close()
		}
	}
	c.wg.Wait()
}

// SubscribeConnection is the subscribe peer connection (nil before the first offer).
func (c *Client) SubscribeConnection() *webrtc.PeerConnection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sub
}
