package edge

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/edge/turn"
	"github.com/edgeflux/edge/internal/metrics"
)

// counters are the server's running totals for /metrics; one atomic add each.
type counters struct {
	joins, whipSessions, whepSessions    metrics.Counter
	tracksPublished, layerSwitches, plis metrics.Counter
	bytesIn, rtcpIn, malformed           metrics.Counter
	badMessages, authFailures            metrics.Counter
	// firstMedia is how long a subscription waits for its first packet: from the moment
	// the SFU adds the track (a WHEP offer, a meeting subscription) to its first keyframe
	// sent. Only the SFU's part: the client's ICE and DTLS and its decoding are in it only
	// as far as the SFU has to wait for them.
	firstMedia metrics.Histogram
	// hop is the SFU's own part of a packet's way: arriving at a layer to handed to the
	// last subscriber's socket queue.
	hop metrics.Histogram
}

// registerMetrics builds the server's /metrics: counters, the rooms as they are (read on
// each scrape, nothing kept per packet), TURN, and the Go runtime and process.
func (s *Server) registerMetrics() {
	r := metrics.NewRegistry()
	s.registry = r
	m := &s.metrics
	m.joins = r.Counter("edge_joins_total", "Room protocol joins.")
	m.whipSessions = r.Counter("edge_whip_sessions_total", "WHIP sessions started.")
	m.whepSessions = r.Counter("edge_whep_sessions_total", "WHEP sessions started.")
	m.tracksPublished = r.Counter("edge_published_streams_total", "Incoming RTP streams (track layers) published.")
	m.layerSwitches = r.Counter("edge_layer_switches_total", "Layer changes of subscribers.")
	m.plis = r.Counter("edge_plis_sent_total", "Keyframe requests sent to publishers.")
	m.bytesIn = r.Counter("edge_received_bytes_total", "RTP bytes received from publishers.")
	m.rtcpIn = r.Counter("edge_rtcp_packets_received_total", "RTCP packets received from subscribers.")
	m.malformed = r.Counter("edge_malformed_packets_total", "Incoming RTP and RTCP packets that did not parse.")
	m.badMessages = r.Counter("edge_bad_messages_total", "Room protocol messages refused.")
	m.authFailures = r.Counter("edge_auth_failures_total", "Requests refused for their token.")
	m.firstMedia = r.Histogram("edge_subscription_first_media_seconds", "From adding a track to a subscriber to its first packet sent (a keyframe).",
		[]float64{0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5})
	m.hop = r.Histogram("edge_forward_hop_seconds", "From a packet's arrival at a layer to its hand-over to the last subscriber's socket queue.",
		[]float64{0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05})
	sfu.ObserveHops(m.hop.Observe)
	r.GaugeFunc("edge_viewers", "WHEP viewers and meeting participants receiving media.", func() float64 { return float64(s.Viewers()) })
	r.GaugeCollector("edge_participants", "Participants per room.", []string{"room"}, func(emit func(float64, ...string)) {
		for _, room := range s.roomList() {
			emit(float64(room.Len()), room.Name)
		}
	})
	r.GaugeCollector("edge_layer_bitrate_bps", "Incoming bitrate of each published layer.", []string{"room", "participant", "track", "quality"},
		func(emit func(float64, ...string)) {
			s.eachLayer(func(room string, t *sfu.Track, l *sfu.Layer) {
				emit(float64(l.Bitrate()), room, t.Participant, t.ID, l.Quality.String())
			})
		})
	r.GaugeCollector("edge_layer_subscribers", "Down tracks receiving each layer.", []string{"room", "participant", "track", "quality"},
		func(emit func(float64, ...string)) {
			s.eachLayer(func(room string, t *sfu.Track, l *sfu.Layer) {
				emit(float64(l.Subscribers()), room, t.Participant, t.ID, l.Quality.String())
			})
		})
	down := func(f func(*sfu.DownTrack) uint64) func() float64 {
		return func() float64 {
			var n uint64
			for _, sub := range s.subscribers() {
				for _, d := range sub.all() {
					n += f(d)
				}
			}
			return float64(n)
		}
	}
	r.GaugeFunc("edge_subscriber_sent_bytes", "Bytes sent to current subscribers.", down(func(d *sfu.DownTrack) uint64 { return d.BytesSent.Load() }))
	r.GaugeFunc("edge_subscriber_sent_packets", "Packets sent to current subscribers.", down(func(d *sfu.DownTrack) uint64 { return d.PacketsSent.Load() }))
	r.GaugeFunc("edge_subscriber_nacks", "Packets current subscribers NACKed.", down(func(d *sfu.DownTrack) uint64 { return d.Nacks.Load() }))
	r.GaugeFunc("edge_subscriber_retransmits", "NACKed packets current subscribers got again from the cache.", down(func(d *sfu.DownTrack) uint64 { return d.Retransmits.Load() }))
	if s.cfg.TURNStats != nil {
		turnStat := func(f func(turn.Stats) float64) func() float64 { return func() float64 { return f(s.cfg.TURNStats()) } }
		r.GaugeFunc("edge_turn_allocations", "TURN allocations open now.", turnStat(func(st turn.Stats) float64 { return float64(st.AllocationsActive) }))
		r.CounterFunc("edge_turn_allocations_total", "TURN allocations created.", turnStat(func(st turn.Stats) float64 { return float64(st.AllocationsTotal) }))
		r.CounterFunc("edge_turn_auth_failures_total", "TURN requests with bad or expired credentials.", turnStat(func(st turn.Stats) float64 { return float64(st.AuthFailures) }))
		r.CounterFunc("edge_turn_relayed_bytes_total", "Bytes relayed by TURN.", turnStat(func(st turn.Stats) float64 { return float64(st.BytesToPeers + st.BytesFromPeers) }))
	}
	metrics.RegisterRuntime(r)
}

func (s *Server) roomList() []*sfu.Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	rooms := make([]*sfu.Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	slices.SortFunc(rooms, func(a, b *sfu.Room) int { return strings.Compare(a.Name, b.Name) })
	return rooms
}

func (s *Server) eachLayer(f func(room string, t *sfu.Track, l *sfu.Layer)) {
	for _, r := range s.roomList() {
		for _, p := range r.Participants() {
			for _, t := range p.Tracks() {
				for _, l := range t.Layers() {
					f(r.Name, t, l)
				}
			}
		}
	}
}

// subscribers lists every connection that receives media.
func (s *Server) subscribers() []*subscriber {
	s.mu.Lock()
	defer s.mu.Unlock()
	var subs []*subscriber
	for _, sess := range s.sessions {
		if sess.sub != nil {
			subs = append(subs, sess.sub)
		}
	}
	for c := range s.clients {
		if c.sub != nil {
			subs = append(subs, c.sub)
		}
	}
	return subs
}

// viewerFeedback passes a camera viewer's bandwidth share to the daemon's rate control, as
// long as the viewer receives the camera's top layer: lower layers exist for viewers on
// poorer links, and must not pull the top layer's bitrate down.
func (s *Server) viewerFeedback(viewer string, d *sfu.DownTrack, share int) {
	t := d.Track()
	if t.Participant != CameraID || t.Kind != webrtc.RTPCodecTypeVideo {
		return
	}
	layers := t.Layers()
	key := viewer + "/" + t.ID
	if l := d.Layer(); l == nil || len(layers) == 0 || l != layers[len(layers)-1] {
		s.viewerLeft(key)
		return
	}
	if s.cfg.ViewerFeedback != nil {
		s.cfg.ViewerFeedback(key, share, d.Loss())
	}
}

func (s *Server) viewerLeft(key string) {
	if s.cfg.ViewerLeft != nil {
		s.cfg.ViewerLeft(key)
	}
}

// RoomStatus is one room in /api/rooms.
type RoomStatus struct {
	Name         string              `json:"name"`
	Participants []ParticipantStatus `json:"participants"`
	Speakers     []string            `json:"speakers"`
}

// ParticipantStatus is one participant in /api/rooms.
type ParticipantStatus struct {
	ID     string        `json:"id"`
	Name   string        `json:"name"`
	Tracks []TrackStatus `json:"tracks"`
	// Downlink is how the SFU sees a meeting participant's receiving link (nil for
	// participants that only publish: the camera, WHIP).
	Downlink *SubscriberStatus `json:"downlink,omitempty"`
}

// TrackStatus is one published track in /api/rooms.
type TrackStatus struct {
	ID          string        `json:"id"`
	Kind        string        `json:"kind"`
	Codec       string        `json:"codec"`
	Muted       bool          `json:"muted"`
	Subscribers int           `json:"subscribers"`
	Layers      []LayerStatus `json:"layers"`
}

// LayerStatus is one layer of a track in /api/rooms.
type LayerStatus struct {
	Quality     string `json:"quality"`
	RID         string `json:"rid"`
	BitrateKbps int    `json:"bitrate_kbps"`
	Subscribers int    `json:"subscribers"`
}

// Rooms reports every room, its participants and their tracks.
func (s *Server) Rooms() []RoomStatus {
	downlinks := map[*sfu.Participant]*subscriber{}
	s.mu.Lock()
	for c := range s.clients {
		if c.sub != nil {
			downlinks[c.participant] = c.sub
		}
	}
	s.mu.Unlock()
	out := []RoomStatus{}
	for _, r := range s.roomList() {
		rs := RoomStatus{Name: r.Name, Participants: []ParticipantStatus{}, Speakers: []string{}}
		for _, sp := range r.Speakers() {
			rs.Speakers = append(rs.Speakers, sp.ParticipantID)
		}
		for _, p := range r.Participants() {
			ps := ParticipantStatus{ID: p.ID, Name: p.Name, Tracks: []TrackStatus{}}
			if sub := downlinks[p]; sub != nil {
				st := sub.status()
				ps.Downlink = &st
			}
			for _, t := range p.Tracks() {
				ts := TrackStatus{ID: t.ID, Kind: t.Kind.String(), Codec: t.Codec.MimeType, Muted: t.Muted(), Subscribers: t.Subscribers()}
				for _, l := range t.Layers() {
					ts.Layers = append(ts.Layers, LayerStatus{Quality: l.Quality.String(), RID: l.RID, BitrateKbps: l.Bitrate() / 1000, Subscribers: l.Subscribers()})
				}
				ps.Tracks = append(ps.Tracks, ts)
			}
			rs.Participants = append(rs.Participants, ps)
		}
		out = append(out, rs)
	}
	return out
}

// SessionStatus is one WHIP or WHEP session in /api/sessions.
type SessionStatus struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // whip or whep
	Room string `json:"room"`
	// Viewer is how a WHEP session's link looks to the SFU (nil for WHIP, and for a WHEP
	// session still connecting).
	Viewer *SubscriberStatus `json:"viewer,omitempty"`
}

// Sessions reports every WHIP and WHEP session.
func (s *Server) Sessions() []SessionStatus {
	s.mu.Lock()
	type entry struct {
		st  SessionStatus
		sub *subscriber
	}
	entries := make([]entry, 0, len(s.sessions))
	for _, sess := range s.sessions {
		entries = append(entries, entry{SessionStatus{ID: sess.id, Kind: sess.kind, Room: sess.room}, sess.sub})
	}
	s.mu.Unlock()
	out := make([]SessionStatus, 0, len(entries))
	for _, e := range entries {
		if e.sub != nil {
			v := e.sub.status()
			e.st.Viewer = &v
		}
		out = append(out, e.st)
	}
	slices.SortFunc(out, func(a, b SessionStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (s *Server) handleSessions(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.Sessions())
}

func (s *Server) handleRooms(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.Rooms())
}
