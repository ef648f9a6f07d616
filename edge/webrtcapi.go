package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/batchudp"
)

// H264Codec is what the appliance camera sends: constrained baseline, packetization mode 1.
var H264Codec = webrtc.RTPCodecCapability{
	MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
	SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
}

// Header extensions the SFU reads from publishers.
const (
	audioLevelURI = sdp.AudioLevelURI
)

// apis are the two pion APIs of the server, sharing one ICE setup and UDP port: publishers'
// connections get NACK generation, receiver reports, transport-wide congestion feedback and
// the simulcast and audio-level header extensions; subscribers' connections get no
// interceptor (the SFU writes their sender reports, answers their NACKs and stamps and
// reads transport-wide congestion control itself) and may fall back to REMB.
type apis struct {
	publish, subscribe *webrtc.API
	mux                io.Closer

	certMu   sync.Mutex
	cert     *webrtc.Certificate
	certMade time.Time
}

// certRenewal is how long one DTLS certificate serves new connections (pion makes them
// valid for a month).
const certRenewal = 24 * time.Hour

// config is the configuration of every peer connection: one bundle, and a DTLS certificate
// shared by all connections and renewed daily. pion would otherwise generate a key and a
// certificate for each connection, and a crowd joining at once would pay for hundreds.
func (a *apis) config() webrtc.Configuration {
	cfg := webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}
	a.certMu.Lock()
	defer a.certMu.Unlock()
	if a.cert == nil || time.Since(a.certMade) > certRenewal {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return cfg // pion makes one for the connection
		}
		cert, err := webrtc.GenerateCertificate(key)
		if err != nil {
			return cfg
		}
		a.cert, a.certMade = cert, time.Now()
	}
	cfg.Certificates = []webrtc.Certificate{*a.cert}
	return cfg
}

func newAPIs(cfg Config) (*apis, error) {
	se, mux, err := settingEngine(cfg)
	if err != nil {
		return nil, err
	}
	pubME, subME := &webrtc.MediaEngine{}, &webrtc.MediaEngine{}
	if err := registerCodecs(pubME, []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, {Type: webrtc.TypeRTCPFBTransportCC}}); err != nil {
		return nil, err
	}
	if err := registerCodecs(subME, []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, {Type: webrtc.TypeRTCPFBTransportCC}, {Type: webrtc.TypeRTCPFBGoogREMB}}); err != nil {
		return nil, err
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := subME.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return nil, fmt.Errorf("transport-wide congestion control extension: %w", err)
		}
	}
	pubReg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(pubReg); err != nil {
		return nil, fmt.Errorf("rtcp reports: %w", err)
	}
	if err := webrtc.ConfigureNack(pubME, pubReg); err != nil {
		return nil, fmt.Errorf("nack: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(pubME, pubReg); err != nil {
		return nil, fmt.Errorf("twcc: %w", err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(pubME); err != nil {
		return nil, fmt.Errorf("simulcast extensions: %w", err)
	}
	if err := pubME.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("audio level extension: %w", err)
	}
	// Subscribers' connections get no interceptors at all: down tracks write their own
	// sender reports once a second (subscriber.sendReports) instead of pion's per-packet
	// bookkeeping, and answer NACKs from the shared caches.
	subReg := &interceptor.Registry{}
	return &apis{
		publish:   webrtc.NewAPI(webrtc.WithMediaEngine(pubME), webrtc.WithInterceptorRegistry(pubReg), webrtc.WithSettingEngine(se)),
		subscribe: webrtc.NewAPI(webrtc.WithMediaEngine(subME), webrtc.WithInterceptorRegistry(subReg), webrtc.WithSettingEngine(se)),
		mux:       mux,
	}, nil
}

// registerCodecs registers what the SFU forwards: H.264 (the appliance camera, and
// publishers that send it), VP8 (browsers' usual simulcast codec) and Opus.
func registerCodecs(me *webrtc.MediaEngine, videoFB []webrtc.RTCPFeedback) error {
	video := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: videoFB}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: videoFB}, PayloadType: 104},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f", RTCPFeedback: videoFB}, PayloadType: 106},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB}, PayloadType: 96},
	}
	for _, c := range video {
		// Each video codec with its RTX (RFC 4588) payload type one above it.
		rtx := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.PayloadType)},
			PayloadType:        c.PayloadType + 1,
		}
		for _, r := range []webrtc.RTPCodecParameters{c, rtx} {
			if err := me.RegisterCodec(r, webrtc.RTPCodecTypeVideo); err != nil {
				return fmt.Errorf("register %s: %w", r.MimeType, err)
			}
		}
	}
	opus := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}
	if err := me.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
		return fmt.Errorf("register opus: %w", err)
	}
	return nil
}

// settingEngine restricts ICE to what the configuration allows and, with a fixed UDP port,
// puts every connection on that one port.
func settingEngine(cfg Config) (webrtc.SettingEngine, io.Closer, error) {
	se := webrtc.SettingEngine{}
	var filter func(string) bool
	if len(cfg.Interfaces) > 0 {
		filter = func(name string) bool { return slices.Contains(cfg.Interfaces, name) }
		se.SetInterfaceFilter(filter)
	}
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	if !cfg.MDNS {
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	if len(cfg.NAT1To1IPs) > 0 {
		se.SetNAT1To1IPs(cfg.NAT1To1IPs, webrtc.ICECandidateTypeHost)
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// Every media socket batches its writes: a packet fanned out to many viewers leaves in
	// a few sendmmsg calls instead of one sendto each.
	bnet, err := batchudp.NewNet()
	if err != nil {
		return se, nil, fmt.Errorf("network: %w", err)
	}
	se.SetNet(bnet)
	// A participant that walks away is noticed in 15 s, not the default 25 s; a busy board
	// or browser that misses checks for a few seconds is not dropped (8 s was seen to drop a
	// browser's publish connection on a loaded 2-core machine).
	se.SetICETimeouts(5*time.Second, 15*time.Second, 2*time.Second)
	if cfg.UDPPort <= 0 {
		return se, nil, nil
	}
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6),
		ice.UDPMuxFromPortWithNet(bnet),
		ice.UDPMuxFromPortWithWriteBufferSize(4 << 20), ice.UDPMuxFromPortWithReadBufferSize(4 << 20),
	}
	if filter != nil {
		opts = append(opts, ice.UDPMuxFromPortWithInterfaceFilter(filter))
	}
	if cfg.IncludeLoopback {
		opts = append(opts, ice.UDPMuxFromPortWithLoopback())
	}
	mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, opts...)
	if err != nil {
		return se, nil, fmt.Errorf("listen for media on UDP port %d: %w", cfg.UDPPort, err)
	}
	se.SetICEUDPMux(mux)
	return se, mux, nil
}
