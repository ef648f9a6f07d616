package edge

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/edgeflux/edge/internal/whepclient"
)

// viewerStatus waits until the only WHEP session's viewer status satisfies ok.
func viewerStatus(t *testing.T, ts *testServer, ok func(SubscriberStatus) bool) SubscriberStatus {
	t.Helper()
	var last SubscriberStatus
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, s := range ts.srv.Sessions() {
			if s.Kind == "whep" && s.Viewer != nil {
				if last = *s.Viewer; ok(last) {
					return last
				}
			}
		}
	}
	t.Fatalf("viewer status never as expected; last %+v", last)
	return last
}

// TestTransportCCViewerFeedsTheSFUsEstimate: a WHEP viewer that negotiates transport-wide
// congestion control, as browsers do, receives every packet with a transport-wide sequence
// number (one after another: nothing is lost on loopback), its feedback reaches the SFU's
// own estimator, and the session's status says the layer choice follows that estimate.
func TestTransportCCViewerFeedsTheSFUsEstimate(t *testing.T) {
	ts := startServer(t, nil)
	var stamped, plain, gaps atomic.Int64
	var last atomic.Int32
	last.Store(-1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := whepclient.Dial(ctx, whepclient.Options{URL: ts.url + "/whep/camera", Token: testToken, LoopbackOnly: true, TransportCC: true},
		func(p *rtp.Packet) {
			if len(p.Extensions) != 1 || len(p.GetExtension(p.GetExtensionIDs()[0])) != 2 {
				plain.Add(1)
				return
			}
			b := p.GetExtension(p.GetExtensionIDs()[0])
			seq := int32(b[0])<<8 | int32(b[1])
			if prev := last.Swap(seq); prev >= 0 && uint16(seq) != uint16(prev+1) {
				gaps.Add(1)
			}
			stamped.Add(1)
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := viewerStatus(t, ts, func(s SubscriberStatus) bool {
		return s.Congestion == "transport-cc" && s.RTTMs > 0 && stamped.Load() > 100
	})
	if plain.Load() != 0 || gaps.Load() != 0 {
		t.Errorf("%d packets stamped, %d without a transport-wide number, %d gaps in the numbers", stamped.Load(), plain.Load(), gaps.Load())
	}
	// Loopback carries far more than the camera sends: the estimate must not fall below
	// what the viewer receives, nor the layer drop.
	if st.EstimateKbps < 500 || st.Delay == "overusing" || len(st.Tracks) != 1 || st.Tracks[0].Layer != "high" {
		t.Errorf("viewer status on loopback: %+v", st)
	}
	t.Logf("%d packets stamped; status %+v", stamped.Load(), st)
}

// TestREMBViewerSteersWithItsOwnEstimate: a viewer that offers no transport-wide
// congestion control gets plain packets, and its REMB is the estimate.
func TestREMBViewerSteersWithItsOwnEstimate(t *testing.T) {
	ts := startServer(t, nil)
	var stamped atomic.Int64
	c, err := dial(t, ts, func(p *rtp.Packet) {
		if p.Extension {
			stamped.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	viewerStatus(t, ts, func(s SubscriberStatus) bool { return len(s.Tracks) == 1 && s.Tracks[0].Packets > 0 })
	if err := c.SendREMB(ctx, 900_000); err != nil {
		t.Fatal(err)
	}
	st := viewerStatus(t, ts, func(s SubscriberStatus) bool { return s.Congestion == "remb" })
	if st.EstimateKbps != 900 || st.RTTMs != 0 || stamped.Load() != 0 {
		t.Errorf("REMB viewer: status %+v, %d packets with header extensions", st, stamped.Load())
	}
}

// TestFirstMediaIsMeasured: the wait of a new viewer for its first keyframe shows in
// /metrics, once per subscription, and so do the hops of the packets it was sent.
func TestFirstMediaIsMeasured(t *testing.T) {
	ts := startServer(t, nil)
	var got atomic.Int64
	c, err := dial(t, ts, func(*rtp.Packet) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the viewer's first packets", func() bool { return got.Load() > 10 })
	_, h := request(t, "GET", ts.url+"/metrics", testToken, "", "")
	body := h.Get("X-Test-Body")
	if !strings.Contains(body, "edge_subscription_first_media_seconds_count 1\n") ||
		strings.Contains(body, "edge_subscription_first_media_seconds_sum 0\n") {
		t.Errorf("/metrics after one viewer started:\n%s", grepLines(body, "first_media"))
	}
	if strings.Contains(body, "edge_forward_hop_seconds_count 0\n") || !strings.Contains(body, "edge_forward_hop_seconds_count") {
		t.Errorf("/metrics after packets were forwarded:\n%s", grepLines(body, "forward_hop"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestConnectionsShareADailyCertificate: peer connections get one DTLS certificate instead
// of generating one each, and a certificate older than a day is replaced.
func TestConnectionsShareADailyCertificate(t *testing.T) {
	ts := startServer(t, nil)
	fingerprint := func() string {
		cfg := ts.srv.apis.config()
		if len(cfg.Certificates) != 1 {
			t.Fatalf("%d certificates in a connection's configuration", len(cfg.Certificates))
		}
		fps, err := cfg.Certificates[0].GetFingerprints()
		if err != nil || len(fps) == 0 {
			t.Fatal(err)
		}
		return fps[0].Value
	}
	first := fingerprint()
	if again := fingerprint(); again != first {
		t.Errorf("two connections got certificates %s and %s; want one", first, again)
	}
	ts.srv.apis.certMu.Lock()
	ts.srv.apis.certMade = time.Now().Add(-certRenewal - time.Minute)
	ts.srv.apis.certMu.Unlock()
	if renewed := fingerprint(); renewed == first {
		t.Error("a certificate older than a day is still handed out")
	}
}
