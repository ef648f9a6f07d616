package edge

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/turn"
	"github.com/edgeflux/edge/internal/coturn"
	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/roomclient"
)

// TestRelayOnlyParticipantThroughCoturn: a participant whose only allowed path is TURN
// joins with the credentials the SFU hands out for an external coturn (shared secret) and
// receives the camera through it.
func TestRelayOnlyParticipantThroughCoturn(t *testing.T) {
	leakcheck.Check(t)
	secret := []byte("coturn-shared-secret-for-edge-tests")
	url := coturn.Start(t, secret)
	ts := startServer(t, func(c *Config) {
		c.ICEServers = func(id string) []turn.ICEServer {
			return turn.ICEServers([]string{url}, secret, id, time.Hour, time.Now())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := roomclient.Dial(ctx, roomclient.Options{
		URL: "ws" + strings.TrimPrefix(ts.url, "http") + "/rtc", Token: mintToken("remote", "main", everything),
		LoopbackOnly: true, RelayOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Joined["ice_servers"]; !strings.Contains(fmtJSON(got), url) {
		t.Fatalf("joined ice_servers %v; want the coturn URL %s", got, url)
	}
	waitFor(t, "the camera through coturn", func() bool { return received(c, CameraID, webrtc.RTPCodecTypeVideo, 30) })
	// One DTLS transport carries the bundled connection; its ICE pair is the path.
	pair, err := c.SubscribeConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("selected pair %v (%v); want the client's relay candidate", pair, err)
	}
}
