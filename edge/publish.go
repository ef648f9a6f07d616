package edge

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
)

// publisher takes one peer connection's incoming media into a room as a participant's
// tracks: a meeting client's publish connection or a WHIP session.
type publisher struct {
	srv  *Server
	room *sfu.Room
	p    *sfu.Participant
	pc   *webrtc.PeerConnection

	mu      sync.Mutex
	tracks  map[string]*sfu.Track // by mid: the layers of one simulcast track share a mid
	ssrcs   map[*sfu.Layer]uint32
	sources map[string]string // mid → source, as the client declared it
	muted   map[string]bool   // mid → muted, for declared tracks whose media has not come yet
	stopped atomic.Bool       // no more packets from this connection reach the layers
	// onActiveLayers tells the publisher which of its layers anyone receives (dynacast).
	onActiveLayers func(t *sfu.Track, active []*sfu.Layer)
}

func newPublisher(srv *Server, room *sfu.Room, p *sfu.Participant, pc *webrtc.PeerConnection) *publisher {
	pub := &publisher{srv: srv, room: room, p: p, pc: pc, tracks: map[string]*sfu.Track{}, ssrcs: map[*sfu.Layer]uint32{}, sources: map[string]string{}, muted: map[string]bool{}}
	pc.OnTrack(pub.handleTrack)
	return pub
}

// publishedTrackID is the id of the track a participant publishes in a media section.
func publishedTrackID(participant, mid string) string {
	return fmt.Sprintf("TR_%s_%s", participant, mid)
}

// declare records what the client says its media sections carry.
func (pub *publisher) declare(mid, source string) {
	pub.mu.Lock()
	pub.sources[mid] = source
	pub.mu.Unlock()
}

// muteDeclared records the mute state of a track the client declared but whose media has
// not arrived yet (a page that joins muted mutes before its first packet): the track is
// published in that state. It reports whether trackID is such a track.
func (pub *publisher) muteDeclared(trackID string, muted bool) bool {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	for mid := range pub.sources {
		if publishedTrackID(pub.p.ID, mid) == trackID && pub.tracks[mid] == nil {
			pub.muted[mid] = muted
			return true
		}
	}
	return false
}

// handleTrack runs for each incoming RTP stream, one per simulcast layer.
func (pub *publisher) handleTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	mid := ""
	for _, tr := range pub.pc.GetTransceivers() {
		if tr.Receiver() == recv {
			mid = tr.Mid()
		}
	}
	pub.mu.Lock()
	t, existed := pub.tracks[mid]
	publish := false
	var mute *bool // the client muted the track before its media came
	if !existed {
		source := pub.sources[mid]
		if source == "" {
			source = map[webrtc.RTPCodecType]string{webrtc.RTPCodecTypeAudio: "microphone", webrtc.RTPCodecTypeVideo: "camera"}[remote.Kind()]
		}
		codec := remote.Codec().RTPCodecCapability
		dynacast := func(active []*sfu.Layer) {
			if pub.onActiveLayers != nil {
				pub.onActiveLayers(t, active)
			}
		}
		if t = pub.adoptableLocked(remote.Kind(), source, codec.MimeType); t != nil {
			// The participant reconnected: its subscribers keep this track.
			t.Adopt(pub.requestKeyframe, dynacast)
		} else {
			info := sfu.TrackInfo{ID: publishedTrackID(pub.p.ID, mid), Kind: remote.Kind(), Source: source, Codec: codec}
			t = sfu.NewTrack(info, pub.p.ID, pub.requestKeyframe, dynacast)
			publish = true
		}
		pub.tracks[mid] = t
		if muted, ok := pub.muted[mid]; ok {
			delete(pub.muted, mid)
			mute = &muted
		}
	}
	quality := sfu.High
	if remote.RID() != "" {
		quality = sfu.QualityOfRID(remote.RID())
	}
	layer := t.AddLayer(remote.RID(), quality, 0, 0)
	pub.ssrcs[layer] = uint32(remote.SSRC())
	pub.mu.Unlock()
	switch {
	case publish && mute != nil:
		t.SetMuted(*mute) // published as the client left it
	case mute != nil:
		pub.room.SetMuted(pub.p, t, *mute) // subscribers of the adopted track are told
	}
	if publish {
		pub.room.Publish(pub.p, t)
	}
	pub.srv.metrics.tracksPublished.Add(1)
	pub.read(remote, layer)
}

// adoptableLocked finds a track the participant published before it reconnected (Room.Join
// hands a replaced participant's tracks to its successor) of the same kind, source and
// codec that no stream of this connection feeds yet.
func (pub *publisher) adoptableLocked(kind webrtc.RTPCodecType, source, mime string) *sfu.Track {
	for _, t := range pub.p.Tracks() {
		if t.Kind != kind || t.Source != source || !strings.EqualFold(t.Codec.MimeType, mime) {
			continue
		}
		taken := false
		for _, mine := range pub.tracks {
			taken = taken || mine == t
		}
		if !taken {
			return t
		}
	}
	return nil
}

// read moves one stream's packets into its layer until the connection ends.
func (pub *publisher) read(remote *webrtc.TrackRemote, layer *sfu.Layer) {
	levelID := 0
	if remote.Kind() == webrtc.RTPCodecTypeAudio {
		for _, ext := range pub.receiverExtensions(remote) {
			if ext.URI == audioLevelURI {
				levelID = ext.ID
			}
		}
	}
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := remote.Read(buf)
		if closed(err) || pub.stopped.Load() {
			return // ended, or replaced: a successor may feed these layers now
		}
		if err != nil {
			pub.srv.metrics.malformed.Add(1)
			continue
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			pub.srv.metrics.malformed.Add(1)
			continue
		}
		payload, paddingOnly := pkt.Payload, false
		if len(payload) == 0 {
			if pkt.Header.PaddingSize == 0 {
				continue
			}
			payload, paddingOnly = buf[n-int(pkt.Header.PaddingSize):n], true
		}
		if levelID != 0 {
			if ext := pkt.GetExtension(uint8(levelID)); len(ext) > 0 {
				layer.SetAudioLevel(ext[0])
			}
		}
		pub.srv.metrics.bytesIn.Add(uint64(n))
		layer.WriteRTP(pkt.SequenceNumber, pkt.Timestamp, pkt.Marker, payload, paddingOnly)
	}
}

func (pub *publisher) receiverExtensions(remote *webrtc.TrackRemote) []webrtc.RTPHeaderExtensionParameter {
	for _, tr := range pub.pc.GetTransceivers() {
		if r := tr.Receiver(); r != nil && r.Track() == remote {
			return r.GetParameters().HeaderExtensions
		}
	}
	for _, tr := range pub.pc.GetTransceivers() {
		if r := tr.Receiver(); r != nil {
			for _, t := range r.Tracks() {
				if t == remote {
					return r.GetParameters().HeaderExtensions
				}
			}
		}
	}
	return nil
}

// requestKeyframe sends a PLI for one layer to the publisher; the layer throttles calls.
func (pub *publisher) requestKeyframe(l *sfu.Layer) {
	pub.mu.Lock()
	ssrc := pub.ssrcs[l]
	pub.mu.Unlock()
	if ssrc == 0 {
		return
	}
	pub.srv.metrics.plis.Add(1)
	_ = pub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// close withdraws the tracks from the room (those a successor adopted stay published).
func (pub *publisher) close() {
	pub.stopped.Store(true)
	pub.mu.Lock()
	tracks := make([]*sfu.Track, 0, len(pub.tracks))
	for _, t := range pub.tracks {
		tracks = append(tracks, t)
	}
	pub.tracks = map[string]*sfu.Track{}
	pub.mu.Unlock()
	for _, t := range tracks {
		pub.room.Unpublish(pub.p, t)
	}
}
