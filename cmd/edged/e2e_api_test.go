//go:build e2e && cgo

package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/edgeflux/edge/edge"
)

// apiGet reads one of edged's JSON status endpoints into v.
func apiGet(t *testing.T, d *daemon, path string, v any) {
	t.Helper()
	code, body := d.get(t, path, testToken)
	if code != 200 {
		t.Fatalf("%s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s %q: %v", path, body, err)
	}
}

// roomParticipants is who /api/rooms says is in room main.
func roomParticipants(t *testing.T, d *daemon) []string {
	t.Helper()
	var rooms []edge.RoomStatus
	apiGet(t, d, "/api/rooms", &rooms)
	var ids []string
	for _, r := range rooms {
		if r.Name == "main" {
			for _, p := range r.Participants {
				ids = append(ids, p.ID)
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// roomDownlinks is each receiving participant's downlink in room main, by participant.
func roomDownlinks(t *testing.T, d *daemon) map[string]edge.SubscriberStatus {
	t.Helper()
	var rooms []edge.RoomStatus
	apiGet(t, d, "/api/rooms", &rooms)
	out := map[string]edge.SubscriberStatus{}
	for _, r := range rooms {
		for _, p := range r.Participants {
			if r.Name == "main" && p.Downlink != nil {
				out[p.ID] = *p.Downlink
			}
		}
	}
	return out
}

// layerSubscribers reads /api/rooms: for the participant's video track, the subscribers of
// each layer by rid, and each layer's bitrate as rid+"_kbps".
func layerSubscribers(t *testing.T, d *daemon, room, participant string) map[string]int {
	t.Helper()
	var rooms []edge.RoomStatus
	apiGet(t, d, "/api/rooms", &rooms)
	out := map[string]int{}
	for _, r := range rooms {
		for _, p := range r.Participants {
			if r.Name != room || p.ID != participant {
				continue
			}
			for _, tr := range p.Tracks {
				if tr.Kind != "video" {
					continue
				}
				for _, l := range tr.Layers {
					out[l.RID] = l.Subscribers
					out[l.RID+"_kbps"] = l.BitrateKbps
				}
			}
		}
	}
	return out
}

// viewerEstimates describes how the SFU sees each WHEP viewer's link, from /api/sessions:
// estimate source, estimate, what arrived, link loss, delay state, round trip, and per
// track the layer sent, the layer probed and the padding sent.
func viewerEstimates(t *testing.T, d *daemon) string {
	t.Helper()
	var sessions []edge.SessionStatus
	apiGet(t, d, "/api/sessions", &sessions)
	var out []string
	for _, s := range sessions {
		if v := s.Viewer; v != nil {
			var layers []string
			for _, tr := range v.Tracks {
				l := tr.Layer
				if tr.Probing != "" {
					l += "→" + tr.Probing
				}
				layers = append(layers, fmt.Sprintf("%s pad %d", l, tr.Padding))
			}
			out = append(out, fmt.Sprintf("%s %dk acked %dk loss %.0f%% %s %.0fms %v", v.Congestion, v.EstimateKbps, v.AckedKbps, v.LinkLossPct, v.Delay, v.RTTMs, layers))
		}
	}
	return strings.Join(out, "; ")
}
