package edge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
)

// counters are the server's running totals for /metrics.
type counters struct {
	joins, whipSessions, whepSessions    atomic.Uint64
	tracksPublished, layerSwitches, plis atomic.Uint64
	bytesIn, rtcpIn, malformed           atomic.Uint64
	badMessages, authFailures            atomic.Uint64
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
	s.mu.Lock()
	rooms := make([]*sfu.Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	slices.SortFunc(rooms, func(a, b *sfu.Room) int { return compare(a.Name, b.Name) })
	out := []RoomStatus{}
	for _, r := range rooms {
		rs := RoomStatus{Name: r.Name, Participants: []ParticipantStatus{}, Speakers: []string{}}
		for _, sp := range r.Speakers() {
			rs.Speakers = append(rs.Speakers, sp.ParticipantID)
		}
		for _, p := range r.Participants() {
			ps := ParticipantStatus{ID: p.ID, Name: p.Name, Tracks: []TrackStatus{}}
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

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Server) handleRooms(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.Rooms())
}

// handleMetrics writes the Prometheus text format.
func (s *Server) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	rooms := s.Rooms()
	participants, tracks, subscribers := 0, 0, 0
	var layerLines []string
	for _, r := range rooms {
		participants += len(r.Participants)
		for _, p := range r.Participants {
			tracks += len(p.Tracks)
			for _, t := range p.Tracks {
				subscribers += t.Subscribers
				for _, l := range t.Layers {
					layerLines = append(layerLines, fmt.Sprintf("edge_layer_bitrate_bps{room=%q,participant=%q,track=%q,quality=%q} %d",
						r.Name, p.ID, t.ID, l.Quality, l.BitrateKbps*1000))
				}
			}
		}
	}
	m := &s.metrics
	fmt.Fprintf(w, "# HELP edge_rooms Rooms open.\n# TYPE edge_rooms gauge\nedge_rooms %d\n", len(rooms))
	fmt.Fprintf(w, "# HELP edge_participants Participants in all rooms.\n# TYPE edge_participants gauge\nedge_participants %d\n", participants)
	fmt.Fprintf(w, "# HELP edge_tracks Published tracks.\n# TYPE edge_tracks gauge\nedge_tracks %d\n", tracks)
	fmt.Fprintf(w, "# HELP edge_subscriptions Down tracks receiving a track.\n# TYPE edge_subscriptions gauge\nedge_subscriptions %d\n", subscribers)
	fmt.Fprintf(w, "# HELP edge_viewers WHEP viewers and meeting participants receiving media.\n# TYPE edge_viewers gauge\nedge_viewers %d\n", s.Viewers())
	fmt.Fprintf(w, "# HELP edge_layer_bitrate_bps Incoming bitrate of each published layer.\n# TYPE edge_layer_bitrate_bps gauge\n")
	for _, l := range layerLines {
		fmt.Fprintln(w, l)
	}
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"edge_joins_total", "Room protocol joins.", &m.joins},
		{"edge_whip_sessions_total", "WHIP sessions started.", &m.whipSessions},
		{"edge_whep_sessions_total", "WHEP sessions started.", &m.whepSessions},
		{"edge_tracks_published_total", "Incoming RTP streams (layers) published.", &m.tracksPublished},
		{"edge_layer_switches_total", "Layer changes of subscribers.", &m.layerSwitches},
		{"edge_plis_sent_total", "Keyframe requests sent to publishers.", &m.plis},
		{"edge_received_bytes_total", "RTP bytes received from publishers.", &m.bytesIn},
		{"edge_rtcp_packets_received_total", "RTCP packets received from subscribers.", &m.rtcpIn},
		{"edge_malformed_packets_total", "Incoming RTP and RTCP packets that did not parse.", &m.malformed},
		{"edge_bad_messages_total", "Room protocol messages refused.", &m.badMessages},
		{"edge_auth_failures_total", "Requests refused for their token.", &m.authFailures},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v.Load())
	}
	nacks, resent, sent, bytes := uint64(0), uint64(0), uint64(0), uint64(0)
	s.mu.Lock()
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
	s.mu.Unlock()
	for _, sub := range subs {
		for _, d := range sub.all() {
			nacks += d.Nacks.Load()
			resent += d.Retransmits.Load()
			sent += d.PacketsSent.Load()
			bytes += d.BytesSent.Load()
		}
	}
	fmt.Fprintf(w, "# HELP edge_sent_packets Packets sent to current subscribers.\n# TYPE edge_sent_packets gauge\nedge_sent_packets %d\n", sent)
	fmt.Fprintf(w, "# HELP edge_sent_bytes Bytes sent to current subscribers.\n# TYPE edge_sent_bytes gauge\nedge_sent_bytes %d\n", bytes)
	fmt.Fprintf(w, "# HELP edge_nacks Packets current subscribers NACKed.\n# TYPE edge_nacks gauge\nedge_nacks %d\n", nacks)
	fmt.Fprintf(w, "# HELP edge_retransmits NACKed packets resent from the cache.\n# TYPE edge_retransmits gauge\nedge_retransmits %d\n", resent)
	if s.cfg.TURNStats != nil {
		st := s.cfg.TURNStats()
		fmt.Fprintf(w, "# HELP edge_turn_allocations TURN allocations open now.\n# TYPE edge_turn_allocations gauge\nedge_turn_allocations %d\n", st.AllocationsActive)
		fmt.Fprintf(w, "# HELP edge_turn_allocations_total TURN allocations created.\n# TYPE edge_turn_allocations_total counter\nedge_turn_allocations_total %d\n", st.AllocationsTotal)
		fmt.Fprintf(w, "# HELP edge_turn_auth_failures_total TURN requests with bad or expired credentials.\n# TYPE edge_turn_auth_failures_total counter\nedge_turn_auth_failures_total %d\n", st.AuthFailures)
		fmt.Fprintf(w, "# HELP edge_turn_relayed_bytes_total Bytes relayed by TURN.\n# TYPE edge_turn_relayed_bytes_total counter\nedge_turn_relayed_bytes_total %d\n", st.BytesToPeers+st.BytesFromPeers)
	}
}
