//go:build cgo

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/roomclient"
)

// TestEmbeddedTURNRelaysAParticipant: with the default configuration the daemon runs its
// own TURN server and hands out credentials with the join; a participant allowed only relay
// candidates receives the camera through it.
func TestEmbeddedTURNRelaysAParticipant(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := roomclient.Dial(ctx, roomclient.Options{
		URL: "ws" + strings.TrimPrefix(d.url, "http") + "/rtc", Token: testToken, LoopbackOnly: true, RelayOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.Contains(fmtAny(c.Joined["ice_servers"]), "turn:127.0.0.1:") {
		t.Fatalf("joined ice_servers %v; want the embedded TURN server", c.Joined["ice_servers"])
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := c.Remotes()["camera-video"]
		if r != nil && r.Kind == webrtc.RTPCodecTypeVideo && r.Packets.Load() > 30 {
			break
		}
		if time.Now().After(deadline) {
			pc := c.SubscribeConnection()
			state := "no subscribe connection"
			if pc != nil {
				state = pc.ConnectionState().String() + "/" + pc.ICEConnectionState().String()
			}
			t.Fatalf("no camera video through the embedded TURN server (subscribe %s, remotes %v, messages %v)\n%s", state, c.Remotes(), c.Messages(), d.stderr)
		}
	}
	pair, err := c.SubscribeConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("selected pair %v (%v); want a relay candidate", pair, err)
	}
	if code, body := d.get(t, "/metrics", testToken); code != 200 || !strings.Contains(body, "edge_turn_allocations_total ") || strings.Contains(body, "edge_turn_allocations 0") {
		t.Errorf("/metrics: %d, want open TURN allocations:\n%s", code, grepLines(body, "edge_turn"))
	}
}

func fmtAny(v any) string { b, _ := json.Marshal(v); return string(b) }

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}
