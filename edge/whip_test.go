package edge

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/turn"
	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/internal/token"
	"github.com/edgeflux/edge/internal/whepclient"
)

// whipPublisher is a pion WHIP client publishing tracks as identity; extra interceptors
// (may be nil) see its outgoing packets.
type whipPublisher struct {
	pc       *webrtc.PeerConnection
	location string
	links    []string
}

func publishWHIP(t *testing.T, ts *testServer, identity string, extra interceptor.Factory, tracks ...webrtc.TrackLocal) *whipPublisher {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		reg.Add(extra)
	}
	se := webrtc.SettingEngine{}
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tracks {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	req, _ := http.NewRequest(http.MethodPost, ts.url+"/whip/main", strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Authorization", "Bearer "+mintToken(identity, "main", token.Grants{Publish: true}))
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP POST: %d %s", resp.StatusCode, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	p := &whipPublisher{pc: pc, location: resp.Header.Get("Location"), links: resp.Header.Values("Link")}
	t.Cleanup(func() { _ = pc.Close() })
	return p
}

// TestWHIPPublisherIsViewedThroughWHEP: a WHIP publisher becomes a participant whose video
// a WHEP viewer receives; DELETE takes it out of the room.
func TestWHIPPublisherIsViewedThroughWHEP(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, func(c *Config) {
		c.ICEServers = func(id string) []turn.ICEServer {
			return []turn.ICEServer{{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "1:" + id, Credential: "x"}}
		}
	})
	video, audio := mediaSource(t, "encoder")
	pub := publishWHIP(t, ts, "encoder", nil, video, audio)
	if !strings.HasPrefix(pub.location, "/sessions/") || len(pub.links) != 1 || !strings.Contains(pub.links[0], `rel="ice-server"`) ||
		!strings.Contains(pub.links[0], `username="1:encoder"`) {
		t.Errorf("WHIP answer: Location %q, Link %q", pub.location, pub.links)
	}
	waitFor(t, "the publisher's tracks", func() bool {
		p := ts.srv.Room("main").Participant("encoder")
		return p != nil && len(p.Tracks()) == 2
	})
	var packets atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	viewer, err := whepclient.Dial(ctx, whepclient.Options{URL: ts.url + "/whep/main/encoder", Token: testToken, LoopbackOnly: true},
		func(p *rtp.Packet) { packets.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	waitFor(t, "the WHEP viewer to receive the WHIP publisher", func() bool { return packets.Load() >= 30 })

	code, _ := request(t, http.MethodDelete, ts.url+pub.location, mintToken("encoder", "main", token.Grants{Publish: true}), "", "")
	if code != http.StatusOK {
		t.Fatalf("DELETE: %d", code)
	}
	waitFor(t, "the publisher to leave", func() bool { return ts.srv.Room("main").Participant("encoder") == nil })
}

// corrupter is a client-side interceptor that mangles every third outgoing RTP packet in
// one of the ways a broken or hostile sender would.
type corrupter struct {
	interceptor.NoOp
	n atomic.Int64
}

func (c *corrupter) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		hdr := *h
		switch c.n.Add(1) % 12 {
		case 3: // wrong version
			hdr.Version = 1
		case 6: // padding longer than the packet
			hdr.Padding = true
			payload = append(append([]byte(nil), payload...), 0xff)
		case 9: // an empty payload with a keyframe-looking marker
			payload = nil
			hdr.Marker = true
		case 0: // a truncated VP8 descriptor
			payload = []byte{0x90}
		}
		return w.Write(&hdr, payload, a)
	})
}

type corrupterFactory struct{ c *corrupter }

func (f corrupterFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.c, nil }

// TestMalformedMediaCannotCrashOrStallTheSFU: a publisher sending broken RTP and RTCP and a
// viewer sending RTCP garbage and a huge NACK list neither crash nor stall the SFU: the
// viewer keeps receiving, another participant keeps being served, and the bad packets are
// counted.
func TestMalformedMediaCannotCrashOrStallTheSFU(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	video, audio := mediaSource(t, "mallory")
	pub := publishWHIP(t, ts, "mallory", corrupterFactory{&corrupter{}}, video, audio)

	var packets atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "mallory's tracks", func() bool {
		p := ts.srv.Room("main").Participant("mallory")
		return p != nil && len(p.Tracks()) == 2
	})
	viewer, err := whepclient.Dial(ctx, whepclient.Options{URL: ts.url + "/whep/main/mallory", Token: testToken, LoopbackOnly: true},
		func(p *rtp.Packet) { packets.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	waitFor(t, "the viewer to receive mallory", func() bool { return packets.Load() >= 20 })

	garbage := []rtcp.Packet{
		&rtcp.RawPacket{0x80},                         // truncated header
		&rtcp.RawPacket{0x40, 200, 0, 1, 0, 0, 0, 0},  // version 1
		&rtcp.RawPacket{0x80, 201, 0xff, 0xff, 0, 0},  // length far beyond the packet
		&rtcp.RawPacket{0xa0, 200, 0, 1, 0, 0, 0, 99}, // padding bit with a bad count
	}
	huge := &rtcp.TransportLayerNack{MediaSSRC: 1}
	for i := range 4000 {
		huge.Nacks = append(huge.Nacks, rtcp.NackPair{PacketID: uint16(i * 17), LostPackets: 0xffff})
	}
	for range 20 {
		for _, g := range garbage {
			_ = pub.pc.WriteRTCP([]rtcp.Packet{g})
			_ = viewer.PeerConnection().WriteRTCP([]rtcp.Packet{g})
		}
		_ = viewer.PeerConnection().WriteRTCP([]rtcp.Packet{huge})
	}
	before := packets.Load()
	waitFor(t, "the viewer to keep receiving after the garbage", func() bool { return packets.Load() >= before+50 })

	// Someone else is still served normally.
	alice := participant(t, ts, "alice", everything)
	waitFor(t, "alice to receive the camera", func() bool { return received(alice, CameraID, webrtc.RTPCodecTypeVideo, 20) })
	if n := ts.srv.metrics.malformed.Value(); n == 0 {
		t.Error("no malformed packet was counted")
	}
	for _, sub := range ts.srv.subscribers() {
		for _, d := range sub.all() {
			if d.Retransmits.Load() > 2000 { // 400/s budget for the few seconds of the test

				t.Errorf("%d retransmissions for NACK lists of 68 million entries; want them capped", d.Retransmits.Load())
			}
		}
	}
}

// TestPublisherReconnectIsSeamlessForViewers: an encoder that restarts (a new WHIP session
// with the same identity, new SSRCs, new numbering) goes on feeding the same track; a WHEP
// viewer keeps its session and sees one stream: same SSRC, sequence numbers without a gap.
func TestPublisherReconnectIsSeamlessForViewers(t *testing.T) {
	leakcheck.Check(t)
	ts := startServer(t, nil)
	v1, a1 := mediaSource(t, "encoder")
	first := publishWHIP(t, ts, "encoder", nil, v1, a1)
	waitFor(t, "the publisher's tracks", func() bool {
		p := ts.srv.Room("main").Participant("encoder")
		return p != nil && len(p.Tracks()) == 2
	})
	var mu sync.Mutex
	var got []rtp.Header
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	viewer, err := whepclient.Dial(ctx, whepclient.Options{URL: ts.url + "/whep/main/encoder", Token: testToken, LoopbackOnly: true},
		func(p *rtp.Packet) {
			mu.Lock()
			got = append(got, p.Header)
			mu.Unlock()
		})
	if err != nil {
		t.Fatal(err)
	}
	defer viewer.Close()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	waitFor(t, "the viewer to receive the first encoder", func() bool { return count() >= 20 })
	before := count()

	v2, a2 := mediaSource(t, "encoder") // a fresh sender: new SSRCs, new random numbering
	publishWHIP(t, ts, "encoder", nil, v2, a2)
	waitFor(t, "the viewer to receive the restarted encoder", func() bool { return count() >= before+40 })
	if err := first.pc.Close(); err != nil { // the old encoder is gone for good
		t.Fatal(err)
	}
	if n := len(ts.srv.Room("main").Participant("encoder").Tracks()); n != 2 {
		t.Errorf("the reconnected publisher has %d tracks; want its 2, adopted", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(got); i++ {
		if got[i].SSRC != got[0].SSRC {
			t.Fatalf("packet %d on SSRC %d, the stream began on %d", i, got[i].SSRC, got[0].SSRC)
		}
		if gap := got[i].SequenceNumber - got[i-1].SequenceNumber; gap != 1 {
			t.Fatalf("packet %d: sequence %d after %d across the reconnect", i, got[i].SequenceNumber, got[i-1].SequenceNumber)
		}
	}
}
