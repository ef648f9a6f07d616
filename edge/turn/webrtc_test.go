package turn

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/leakcheck"
)

// relayOnlyPeer is a pion peer that may use only TURN relay candidates
// (ICETransportPolicyRelay). On loopback nothing else is needed: pion gathers relay
// candidates by binding 0.0.0.0 and talking to the TURN server, and loopback filtering
// (SetIncludeLoopbackCandidate) applies only to host candidates, which the relay policy
// drops anyway. The relayed addresses are 127.0.0.1, so the TURN server must allow loopback
// peers: pion/turn does by default, coturn needs allow-loopback-peers.
func relayOnlyPeer(t *testing.T, servers []ICEServer) *webrtc.PeerConnection {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	var m webrtc.MediaEngine
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var conf webrtc.Configuration
	conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	for _, s := range servers {
		conf.ICEServers = append(conf.ICEServers, s.WebRTC())
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&m)).NewPeerConnection(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// gathered waits for pc's ICE gathering after setting desc and returns its full local SDP.
func gathered(t *testing.T, pc *webrtc.PeerConnection, desc webrtc.SessionDescription) webrtc.SessionDescription {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE gathering did not complete in 10 s")
	}
	return *pc.LocalDescription()
}

// relayCall connects a sender and a receiver that may only use TURN relays, sends RTP until
// the receiver counted want packets, and returns how many arrived. It fails the test unless
// both selected candidate pairs are relay to relay.
func relayCall(t *testing.T, sendServers, recvServers []ICEServer, want int) int {
	t.Helper()
	sender := relayOnlyPeer(t, sendServers)
	receiver := relayOnlyPeer(t, recvServers)

	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "relay-test")
	if err != nil {
		t.Fatal(err)
	}
	rtpSender, err := sender.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	go func() { // drain RTCP; ends when the sender closes
		buf := make([]byte, 1500)
		for {
			if _, _, err := rtpSender.Read(buf); err != nil {
				return
			}
		}
	}()

	var received atomic.Int64
	readerDone := make(chan struct{})
	receiver.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		defer close(readerDone)
		for {
			if _, _, err := remote.ReadRTP(); err != nil {
				return
			}
			received.Add(1)
		}
	})
	connected := make(chan struct{})
	var once atomic.Bool
	receiver.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected && once.CompareAndSwap(false, true) {
			close(connected)
		}
	})

	offer, err := sender.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	offer = gathered(t, sender, offer)
	if n := strings.Count(offer.SDP, "typ relay"); n == 0 || strings.Contains(offer.SDP, "typ host") {
		t.Fatalf("sender's offer should carry only relay candidates:\n%s", offer.SDP)
	}
	if err := receiver.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer, err := receiver.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer = gathered(t, receiver, answer)
	if strings.Count(answer.SDP, "typ relay") == 0 || strings.Contains(answer.SDP, "typ host") {
		t.Fatalf("receiver's answer should carry only relay candidates:\n%s", answer.SDP)
	}
	if err := sender.SetRemoteDescription(answer); err != nil {
		t.Fatal(err)
	}

	select {
	case <-connected:
	case <-time.After(15 * time.Second):
		t.Fatalf("not connected through TURN after 15 s (receiver %s, sender %s)", receiver.ConnectionState(), sender.ConnectionState())
	}
	for _, pc := range []*webrtc.PeerConnection{sender, receiver} {
		tr := pc.GetTransceivers()[0]
		dtls := tr.Receiver().Transport()
		if tr.Sender() != nil {
			dtls = tr.Sender().Transport()
		}
		pair, err := dtls.ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			t.Fatalf("no selected pair: %v", err)
		}
		if pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("selected pair %s is not relay to relay", pair)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}, Payload: make([]byte, 200)}
	pkt.Payload[0] = 0x10 // VP8 payload descriptor: start of partition
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; received.Load() < int64(want); sent++ {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d packets arrived through TURN after %d sent", received.Load(), want, sent)
		case <-tick.C:
		}
		pkt.SequenceNumber = uint16(sent)
		pkt.Timestamp = uint32(sent) * 3000
		pkt.Marker = true
		if err := track.WriteRTP(pkt); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	sender.Close()
	receiver.Close()
	select {
	case <-readerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the receiver's track reader did not end after Close")
	}
	return int(received.Load())
}

func TestWebRTCThroughEmbeddedServer(t *testing.T) {
	leakcheck.Check(t)
	s := newTestServer(t, nil)
	now := time.Now()
	got := relayCall(t,
		ICEServers(s.URLs(), testSecret, "alice", time.Hour, now),
		ICEServers(s.URLs(), testSecret, "bob", time.Hour, now), 200)
	st := s.Stats()
	t.Logf("%d RTP packets relayed through the embedded TURN server; stats %+v", got, st)
	if st.AllocationsTotal < 2 || st.BytesToPeers < uint64(got)*200 || st.BytesFromPeers < uint64(got)*200 {
		t.Fatalf("stats do not show the call: %+v", st)
	}
	waitFor(t, "both allocations to close", func() bool { return s.Stats().AllocationsActive == 0 })
}

func TestWebRTCExpiredCredentials(t *testing.T) {
	leakcheck.Check(t)
	s := newTestServer(t, nil)
	expired := ICEServers(s.URLs(), testSecret, "alice", time.Hour, time.Now().Add(-2*time.Hour))
	pc := relayOnlyPeer(t, expired)
	if _, err := pc.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	offer = gathered(t, pc, offer)
	if strings.Contains(offer.SDP, "typ relay") {
		t.Fatalf("got a relay candidate with expired credentials:\n%s", offer.SDP)
	}
	if st := s.Stats(); st.AllocationsTotal != 0 || st.AuthFailures == 0 {
		t.Fatalf("stats after expired credentials: %+v", st)
	}
	pc.Close()
}
