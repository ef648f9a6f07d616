// Package whepclient is a WHEP viewer built on pion: it posts an offer, receives the video
// track and hands each RTP packet to a callback. Tests, benchmarks and load tools use it as a
// real peer of the edge.
package whepclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Options says where to connect and how.
type Options struct {
	URL   string // the WHEP endpoint, e.g. http://127.0.0.1:8080/whep/camera
	Token string
	// LoopbackOnly keeps every ICE candidate on the loopback interface and mDNS off, as
	// tests on a shared machine must.
	LoopbackOnly bool
	// TransportCC negotiates transport-wide congestion control, as browsers do: the viewer
	// sends feedback on every packet instead of an estimate of its own (REMB).
	TransportCC bool
}

// StatusError is a non-201 answer to the offer.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string { return fmt.Sprintf("WHEP offer: HTTP %d: %s", e.Code, e.Body) }

// Client is one WHEP session.
type Client struct {
	opts     Options
	pc       *webrtc.PeerConnection
	location string
	ssrc     chan uint32
}

// Dial creates a session and returns once the answer is applied; media arrives on onPacket
// (from pion's goroutine) after ICE and DTLS connect.
func Dial(ctx context.Context, opts Options, onPacket func(*rtp.Packet)) (*Client, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, err
	}
	if opts.TransportCC {
		if err := webrtc.ConfigureTWCCSender(me, reg); err != nil {
			return nil, err
		}
	}
	se := webrtc.SettingEngine{}
	if opts.LoopbackOnly {
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		se.SetIncludeLoopbackCandidate(true)
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &Client{opts: opts, pc: pc, ssrc: make(chan uint32, 1)}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		pc.Close()
		return nil, err
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.ssrc <- uint32(tr.SSRC())
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			onPacket(pkt)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		pc.Close()
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		pc.Close()
		return nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		pc.Close()
		return nil, ctx.Err()
	}
	answer, location, err := c.post(ctx, pc.LocalDescription().SDP)
	if err != nil {
		pc.Close()
		return nil, err
	}
	c.location = location
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.Close()
		return nil, fmt.Errorf("apply answer: %w", err)
	}
	return c, nil
}

func (c *Client) post(ctx context.Context, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.opts.URL, bytes.NewBufferString(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", &StatusError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(body))}
	}
	loc, err := resp.Location()
	if err != nil {
		return "", "", fmt.Errorf("201 without a usable Location: %w", err)
	}
	return string(body), loc.String(), nil
}

// Location is the session URL the server returned.
func (c *Client) Location() string { return c.location }

// PeerConnection exposes the underlying connection, for state and stats.
func (c *Client) PeerConnection() *webrtc.PeerConnection { return c.pc }

// SendPLI asks the sender for a keyframe once the track has arrived.
func (c *Client) SendPLI(ctx context.Context) error {
	ssrc, err := c.trackSSRC(ctx)
	if err != nil {
		return err
	}
	return c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// SendREMB tells the sender this viewer's bandwidth estimate, as a browser does.
func (c *Client) SendREMB(ctx context.Context, bps float32) error {
	ssrc, err := c.trackSSRC(ctx)
	if err != nil {
		return err
	}
	return c.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: bps, SSRCs: []uint32{ssrc}}})
}

// trackSSRC waits for the video track and returns its SSRC.
func (c *Client) trackSSRC(ctx context.Context) (uint32, error) {
	select {
	case ssrc := <-c.ssrc:
		c.ssrc <- ssrc
		return ssrc, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Close ends the session on the server (DELETE) and closes the connection.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var delErr error
	if u, err := url.Parse(c.location); err == nil && c.location != "" {
		base, _ := url.Parse(c.opts.URL)
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, base.ResolveReference(u).String(), nil)
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
		if resp, err := http.DefaultClient.Do(req); err != nil {
			delErr = err
		} else {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				delErr = fmt.Errorf("DELETE %s: HTTP %d", c.location, resp.StatusCode)
			}
		}
	}
	if err := c.pc.Close(); err != nil {
		return err
	}
	return delErr
}
