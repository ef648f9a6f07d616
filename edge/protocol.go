package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
)

// The room protocol's messages (docs/room-protocol.md). Client messages are parsed
// strictly: an unknown type or field, a missing field or one that does not belong to the
// type is an error the client is told about.

// maxMessageBytes bounds one WebSocket message.
const maxMessageBytes = 64 << 10

// clientMessage is the union of every client message's fields.
type clientMessage struct {
	Type       string                   `json:"type"`
	Token      string                   `json:"token,omitempty"`
	Name       string                   `json:"name,omitempty"`
	SDP        string                   `json:"sdp,omitempty"`
	Tracks     []trackDeclaration       `json:"tracks,omitempty"`
	Target     string                   `json:"target,omitempty"`
	Candidate  *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	TrackID    string                   `json:"track_id,omitempty"`
	Subscribed *bool                    `json:"subscribed,omitempty"`
	Quality    string                   `json:"quality,omitempty"`
	MaxWidth   int                      `json:"max_width,omitempty"`
	MaxHeight  int                      `json:"max_height,omitempty"`
	Muted      *bool                    `json:"muted,omitempty"`
	T          *float64                 `json:"t,omitempty"`
}

// trackDeclaration is what a publisher says about one of its media sections.
type trackDeclaration struct {
	Mid       string `json:"mid"`
	Source    string `json:"source"`
	Simulcast bool   `json:"simulcast,omitempty"`
}

var errBadMessage = errors.New("bad message")

// allowedFields lists, per type, the fields a message may carry (type itself aside).
var allowedFields = map[string][]string{
	"join":             {"token", "name"},
	"publish_offer":    {"sdp", "tracks"},
	"subscribe_answer": {"sdp"},
	"candidate":        {"target", "candidate"},
	"subscription":     {"track_id", "subscribed", "quality", "max_width", "max_height"},
	"mute":             {"track_id", "muted"},
	"leave":            {},
	"ping":             {"t"},
}

// parseClientMessage decodes and checks one client message.
func parseClientMessage(b []byte) (clientMessage, error) {
	var m clientMessage
	if len(b) > maxMessageBytes {
		return m, fmt.Errorf("%w: larger than %d KiB", errBadMessage, maxMessageBytes>>10)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return m, fmt.Errorf("%w: not a JSON object: %v", errBadMessage, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: %v", errBadMessage, err)
	}
	allowed, ok := allowedFields[m.Type]
	if !ok {
		return m, fmt.Errorf("%w: unknown type %q", errBadMessage, m.Type)
	}
	for f := range fields {
		if f != "type" && !slices.Contains(allowed, f) {
			return m, fmt.Errorf("%w: %s has no field %q", errBadMessage, m.Type, f)
		}
	}
	missing := func(what string) error { return fmt.Errorf("%w: %s needs %s", errBadMessage, m.Type, what) }
	switch m.Type {
	case "join":
		if m.Token == "" {
			return m, missing("token")
		}
		if len(m.Name) > 256 {
			return m, fmt.Errorf("%w: name longer than 256 bytes", errBadMessage)
		}
	case "publish_offer", "subscribe_answer":
		if m.SDP == "" {
			return m, missing("sdp")
		}
		for _, t := range m.Tracks {
			if t.Mid == "" || len(t.Mid) > 32 {
				return m, fmt.Errorf("%w: a track needs a mid of 1 to 32 characters", errBadMessage)
			}
			if !slices.Contains([]string{"camera", "microphone", "screen"}, t.Source) {
				return m, fmt.Errorf("%w: track source %q is not camera, microphone or screen", errBadMessage, t.Source)
			}
		}
	case "candidate":
		if m.Target != "publish" && m.Target != "subscribe" {
			return m, fmt.Errorf("%w: candidate target must be publish or subscribe", errBadMessage)
		}
	case "subscription":
		if m.TrackID == "" || m.Subscribed == nil {
			return m, missing("track_id and subscribed")
		}
		if _, ok := sfu.ParseQuality(m.Quality); !ok && m.Quality != "" && m.Quality != "auto" {
			return m, fmt.Errorf("%w: quality must be low, medium, high or auto", errBadMessage)
		}
		if m.MaxWidth < 0 || m.MaxHeight < 0 || m.MaxWidth > 16384 || m.MaxHeight > 16384 {
			return m, fmt.Errorf("%w: max_width and max_height must be 0 to 16384", errBadMessage)
		}
	case "mute":
		if m.TrackID == "" || m.Muted == nil {
			return m, missing("track_id and muted")
		}
	}
	return m, nil
}

// trackJSON is a track as the protocol describes it.
func trackJSON(t *sfu.Track) map[string]any {
	layers := []map[string]any{}
	for _, l := range t.Layers() {
		layers = append(layers, map[string]any{"quality": l.Quality.String(), "rid": l.RID, "width": l.Width, "height": l.Height})
	}
	return map[string]any{
		"id": t.ID, "kind": t.Kind.String(), "source": t.Source, "codec": t.Codec.MimeType,
		"muted": t.Muted(), "layers": layers,
	}
}

func participantJSON(p sfu.ParticipantInfo) map[string]any {
	tracks := []map[string]any{}
	for _, t := range p.Tracks {
		tracks = append(tracks, trackJSON(t))
	}
	return map[string]any{"id": p.ID, "name": p.Name, "tracks": tracks}
}

// qualityFor turns a subscription's quality or size into a layer cap.
func qualityFor(t *sfu.Track, quality string, maxW, maxH int) sfu.Quality {
	if q, ok := sfu.ParseQuality(quality); ok {
		return q
	}
	if maxW == 0 && maxH == 0 {
		return sfu.High
	}
	best := sfu.Low
	for _, l := range t.Layers() {
		if l.Width == 0 || (maxW == 0 || l.Width <= maxW) && (maxH == 0 || l.Height <= maxH) {
			best = max(best, l.Quality)
		}
	}
	return best
}
