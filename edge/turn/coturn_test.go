package turn

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/coturn"
	"github.com/edgeflux/edge/internal/leakcheck"
)

// TestWebRTCThroughCoturn is the external-TURN path: the same Credentials and ICEServers,
// against a real coturn with static-auth-secret.
func TestWebRTCThroughCoturn(t *testing.T) {
	leakcheck.Check(t)
	secret := []byte("coturn-shared-secret-for-the-test")
	url := coturn.Start(t, secret)
	now := time.Now()
	got := relayCall(t,
		ICEServers([]string{url}, secret, "alice", time.Hour, now),
		ICEServers([]string{url}, secret, "bob", time.Hour, now), 200)
	t.Logf("%d RTP packets relayed through coturn (%s)", got, url)

	t.Run("expired credentials refused", func(t *testing.T) {
		pc := relayOnlyPeer(t, ICEServers([]string{url}, secret, "alice", time.Hour, now.Add(-2*time.Hour)))
		if _, err := pc.CreateDataChannel("x", nil); err != nil {
			t.Fatal(err)
		}
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if sdp := gathered(t, pc, offer).SDP; strings.Contains(sdp, "typ relay") {
			t.Fatalf("coturn gave a relay candidate for expired credentials:\n%s", sdp)
		}
		pc.Close()
	})
	t.Run("wrong secret refused", func(t *testing.T) {
		pc := relayOnlyPeer(t, ICEServers([]string{url}, []byte("not the coturn secret at all"), "alice", time.Hour, now))
		if _, err := pc.CreateDataChannel("x", nil); err != nil {
			t.Fatal(err)
		}
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if sdp := gathered(t, pc, offer).SDP; strings.Contains(sdp, "typ relay") {
			t.Fatalf("coturn gave a relay candidate for a wrong secret:\n%s", sdp)
		}
		pc.Close()
	})
}
