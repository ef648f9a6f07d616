package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
)

// h264Offer is the one codec viewers offer: what browsers offer first for H.264, with the
// feedback a real viewer uses (NACK, PLI) and no bandwidth estimation, so the server's
// rate control sees loss reports only.
var h264Offer = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType:    webrtc.MimeTypeH264,
		ClockRate:   90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		RTCPFeedback: []webrtc.RTCPFeedback{
			{Type: "nack"}, {Type: "nack", Parameter: "pli"},
		},
	},
	PayloadType: 102,
}

// newViewerAPI builds the pion API all viewers share: H.264 only, and of the interceptors only
// the NACK generator (so lost packets are asked for again), receiver reports and, with
// transportCC, transport-wide congestion feedback as a browser sends it. No jitter buffer,
// no decoder, no bandwidth estimator.
func newViewerAPI(loopbackOnly, transportCC bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(h264Offer, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("register H.264: %w", err)
	}
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, fmt.Errorf("nack generator: %w", err)
	}
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return nil, fmt.Errorf("receiver reports: %w", err)
	}
	reg := &interceptor.Registry{}
	reg.Add(gen)
	reg.Add(rr)
	if transportCC {
		if err := webrtc.ConfigureTWCCSender(me, reg); err != nil {
			return nil, fmt.Errorf("transport-wide feedback: %w", err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if loopbackOnly {
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		se.SetIncludeLoopbackCandidate(true)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// viewerCounters is a snapshot of one viewer's reception.
type viewerCounters struct {
	Packets uint64 // every RTP packet read, duplicates included
	Bytes   uint64 // RTP bytes (header and payload, after SRTP)
	Seq     seqStats
}

// viewer is one WHEP session that counts what it receives.
type viewer struct {
	http     *http.Client
	endpoint string
	token    string
	hop      *hopClock // nil unless publishing

	pc       *webrtc.PeerConnection
	location string
	started  time.Time // when the offer was posted
	reader   sync.WaitGroup

	mu       sync.Mutex
	counters viewerCounters
	seq      seqCounter
	kf       keyframeDetector
	answered time.Duration // POST sent -> 201 received
	firstPkt time.Duration // POST sent -> first RTP packet
	ttff     time.Duration // POST sent -> first complete IDR access unit; 0 until then
	gotFrame chan struct{} // closed when ttff is set
	closed   bool          // no reader may start any more
}

func newViewer(client *http.Client, endpoint, token string, hop *hopClock) *viewer {
	return &viewer{http: client, endpoint: endpoint, token: token, hop: hop, gotFrame: make(chan struct{})}
}

// join creates the session: offer with all candidates, POST, apply the answer. Media then
// arrives on pion's goroutines; join does not wait for it.
func (v *viewer) join(ctx context.Context, api *webrtc.API) error {
	pc, err := api.NewPeerConnection(webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	v.pc = pc
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fmt.Errorf("add transceiver: %w", err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		v.mu.Lock()
		if v.closed {
			v.mu.Unlock()
			return
		}
		v.reader.Add(1)
		v.mu.Unlock()
		defer v.reader.Done()
		v.read(tr)
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	}
	v.started = time.Now()
	answer, location, err := v.post(ctx, pc.LocalDescription().SDP)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.answered = time.Since(v.started)
	v.location = location
	v.mu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("apply answer: %w", err)
	}
	return nil
}

// statusError is a WHEP or WHIP answer other than 201.
type statusError struct {
	Code int
	Body string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

// postSDP sends an offer to a WHIP or WHEP endpoint (RFC 9725 4.2) and returns the answer and
// the absolute session URL from Location.
func postSDP(ctx context.Context, client *http.Client, endpoint, token, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewBufferString(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", fmt.Errorf("POST %s: reading the answer: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", &statusError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(body))}
	}
	loc, err := resp.Location() // resolved against the request URL
	if err != nil {
		return "", "", fmt.Errorf("POST %s: 201 without a usable Location: %w", endpoint, err)
	}
	return string(body), loc.String(), nil
}

// deleteSession ends a WHIP or WHEP session (RFC 9725 4.2).
func deleteSession(client *http.Client, location, token string) error {
	if location == "" {
		return nil
	}
	if _, err := url.Parse(location); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, location, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("DELETE %s: %w", location, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE %s: HTTP %d", location, resp.StatusCode)
	}
	return nil
}

func (v *viewer) post(ctx context.Context, offer string) (string, string, error) {
	return postSDP(ctx, v.http, v.endpoint, v.token, offer)
}

// read counts the track's packets until the connection closes. It reads raw bytes into one
// buffer and parses only the fixed header: no allocation per packet.
func (v *viewer) read(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		p, ok := parseRTP(buf[:n])
		if !ok {
			continue
		}
		if v.hop != nil {
			v.hop.received(p.payload)
		}
		now := time.Now()
		v.mu.Lock()
		if v.counters.Packets == 0 {
			v.firstPkt = now.Sub(v.started)
		}
		v.counters.Packets++
		v.counters.Bytes += uint64(n)
		v.seq.push(p.seq)
		if v.ttff == 0 && v.kf.push(p) {
			v.ttff = now.Sub(v.started)
			close(v.gotFrame)
		}
		v.mu.Unlock()
	}
}

// snapshot returns the counters now.
func (v *viewer) snapshot() viewerCounters {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.counters
	c.Seq = v.seq.stats()
	return c
}

// timings returns the join timings; ttff is 0 when no keyframe came.
func (v *viewer) timings() (answered, firstPkt, ttff time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.answered, v.firstPkt, v.ttff
}

// close ends the session on the server and closes the peer connection, then waits for the
// reader to stop.
func (v *viewer) close() error {
	v.mu.Lock()
	location := v.location
	v.closed = true
	v.mu.Unlock()
	delErr := deleteSession(v.http, location, v.token)
	if v.pc == nil {
		return delErr
	}
	closeErr := v.pc.Close() // ends the reader's Read
	v.reader.Wait()
	return errors.Join(delErr, closeErr)
}
