package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/openh264"
	"github.com/edgeflux/edge/internal/h264"
)

// clipFrame is one pre-encoded access unit (Annex B).
type clipFrame struct {
	data     []byte
	keyframe bool
}

// encodeClip encodes seconds of the project's test pattern once, so publishing it costs only
// packetization and SRTP. The clip starts on an IDR, and keyframes come every 2 s, so looping
// back to frame 0 always restarts on an IDR. grain adds that much random noise (+-grain) to
// every luma sample: the plain pattern compresses to about a quarter of 2 Mbit/s at 720p, and
// grain makes the encoder spend its whole bitrate, as a real camera's picture does.
func encodeClip(seconds float64, w, h, fps, bitrateBps, grain int) ([]clipFrame, error) {
	src, err := testpattern.New(testpattern.Config{Width: w, Height: h, FPS: fps})
	if err != nil {
		return nil, err
	}
	enc, err := openh264.New(encoder.Config{Width: w, Height: h, FPS: fps, BitrateBps: bitrateBps,
		KeyframeInterval: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("publisher needs the software encoder (a cgo build): %w", err)
	}
	defer enc.Close()
	n := max(1, int(seconds*float64(fps)))
	t0 := time.Now()
	var clip []clipFrame
	for i := range n {
		f := src.Draw(uint64(i), t0.Add(time.Duration(i)*time.Second/time.Duration(fps)))
		addGrain(f.Planes[0], grain, uint64(i))
		au, err := enc.Encode(f)
		if err != nil {
			return nil, err
		}
		if len(au.Data) == 0 {
			continue
		}
		key := au.Keyframe || h264.IsKeyframe(au.Data)
		if len(clip) == 0 && !key {
			continue // the loop must begin on an IDR
		}
		clip = append(clip, clipFrame{data: bytes.Clone(au.Data), keyframe: key})
	}
	if len(clip) == 0 {
		return nil, errors.New("encoder produced no keyframe")
	}
	return clip, nil
}

// addGrain adds noise in [-grain, grain] to each sample, clamped to 16..235 (a xorshift, so
// that 720p frames take milliseconds).
func addGrain(plane []byte, grain int, seed uint64) {
	if grain <= 0 {
		return
	}
	x := seed*0x9e3779b97f4a7c15 | 1
	span := uint64(2*grain + 1)
	for i, v := range plane {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		n := int(v) + int(x%span) - grain
		plane[i] = byte(min(max(n, 16), 235))
	}
}

// publisher sends a looped clip to a WHIP endpoint (RFC 9725).
type publisher struct {
	log      *slog.Logger
	http     *http.Client
	token    string
	pc       *webrtc.PeerConnection
	track    *webrtc.TrackLocalStaticRTP
	location string
	clip     []clipFrame
	fps      int
	// gapPerByte spaces a frame's packets the way a browser's pacer does (0: a frame's
	// packets leave at once).
	gapPerByte time.Duration

	stop    context.CancelFunc
	restart atomic.Bool // a PLI arrived: go back to the clip's IDR
	frames  atomic.Uint64
	wg      sync.WaitGroup
}

// startPublisher posts the offer and, once answered, sends the clip at fps until ctx ends.
func startPublisher(ctx context.Context, log *slog.Logger, client *http.Client, endpoint, token string,
	clip []clipFrame, fps int, pacing float64, loopbackOnly bool, hop *hopClock) (*publisher, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(h264Offer, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if hop != nil {
		reg.Add(hopFactory{hop}) // first: the writer nearest the wire
	}
	if err := webrtc.ConfigureNack(me, reg); err != nil { // answer the server's NACKs
		return nil, err
	}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if loopbackOnly {
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		se.SetIncludeLoopbackCandidate(true)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return nil, err
	}
	p := &publisher{log: log, http: client, token: token, pc: pc, clip: clip, fps: fps}
	if pacing > 0 {
		var bytes int
		for _, f := range clip {
			bytes += len(f.data)
		}
		bytesPerSec := float64(bytes) * float64(fps) / float64(len(clip))
		p.gapPerByte = time.Duration(float64(time.Second) / (pacing * bytesPerSec))
	}
	fail := func(err error) (*publisher, error) {
		_ = pc.Close()
		return nil, err
	}
	p.track, err = webrtc.NewTrackLocalStaticRTP(h264Offer.RTPCodecCapability, "video", "edgebench")
	if err != nil {
		return fail(err)
	}
	sender, err := pc.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fail(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	answer, location, err := postSDP(ctx, client, endpoint, token, pc.LocalDescription().SDP)
	if err != nil {
		return fail(fmt.Errorf("WHIP: %w", err))
	}
	p.location = location
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		_ = deleteSession(client, location, token)
		return fail(fmt.Errorf("WHIP: apply answer: %w", err))
	}
	sendCtx, stop := context.WithCancel(context.Background())
	p.stop = stop
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.readRTCP(sender.Sender()) }()
	go func() { defer p.wg.Done(); p.send(sendCtx) }()
	log.Info("publishing", "whip", endpoint, "session", location, "frames", len(clip), "fps", fps)
	return p, nil
}

// send writes one access unit per frame interval, looping the clip. Every frame gets a new
// timestamp (one frame duration later) and sequence numbers continue, so the loop is
// seamless on the wire; it restarts on the clip's first frame, an IDR. With pacing, a frame's
// packets are spaced by their size over the paced rate, as browsers send.
func (p *publisher) send(ctx context.Context) {
	interval := time.Second / time.Duration(p.fps)
	// The track sets the negotiated SSRC and payload type on every packet it writes.
	packetizer := rtp.NewPacketizer(rtpMTU, 0, 0, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	samples := uint32(90000 / p.fps)
	t := time.NewTicker(interval)
	defer t.Stop()
	i := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.restart.Swap(false) {
			i = 0
		}
		pkts := packetizer.Packetize(p.clip[i].data, samples)
		for n, pkt := range pkts {
			if err := p.track.WriteRTP(pkt); err != nil {
				return
			}
			if p.gapPerByte > 0 && n < len(pkts)-1 {
				time.Sleep(time.Duration(len(pkt.Payload)) * p.gapPerByte)
			}
		}
		p.frames.Add(1)
		i = (i + 1) % len(p.clip)
	}
}

// rtpMTU is the largest RTP payload the publisher sends, as browsers do.
const rtpMTU = 1200

// readRTCP turns the server's PLI/FIR into a jump back to the clip's IDR, at most twice a
// second.
func (p *publisher) readRTCP(sender *webrtc.RTPSender) {
	var last time.Time
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if time.Since(last) > 500*time.Millisecond {
					last = time.Now()
					p.restart.Store(true)
				}
			}
		}
	}
}

// Close sends DELETE and closes the connection; the sending goroutines end with it.
func (p *publisher) Close() error {
	p.stop()
	delErr := deleteSession(p.http, p.location, p.token)
	closeErr := p.pc.Close()
	p.wg.Wait()
	return errors.Join(delErr, closeErr)
}
