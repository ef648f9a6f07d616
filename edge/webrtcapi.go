package edge

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// newAPI builds the pion API every peer connection is made from: H.264 only, sender reports,
// and ICE restricted to what the configuration allows. It returns the UDP mux to close, if any.
func newAPI(cfg Config) (*webrtc.API, io.Closer, error) {
	me := &webrtc.MediaEngine{}
	for i, profile := range []string{"42e01f", "42001f"} {
		c := H264Codec
		c.SDPFmtpLine = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: c, PayloadType: webrtc.PayloadType(102 + 2*i),
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, nil, fmt.Errorf("register H.264: %w", err)
		}
	}
	// Only RTCP reports: NACKs are answered from each track's shared ring, not from a
	// per-viewer copy that pion's NACK responder would keep.
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, nil, fmt.Errorf("rtcp reports: %w", err)
	}

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
	// A viewer that walks away is noticed in seconds, not the default 25 s.
	se.SetICETimeouts(4*time.Second, 8*time.Second, 2*time.Second)

	var closer io.Closer
	if cfg.UDPPort > 0 {
		opts := []ice.UDPMuxFromPortOption{ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6)}
		if filter != nil {
			opts = append(opts, ice.UDPMuxFromPortWithInterfaceFilter(filter))
		}
		if cfg.IncludeLoopback {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
		mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("listen for media on UDP port %d: %w", cfg.UDPPort, err)
		}
		se.SetICEUDPMux(mux)
		closer = mux
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), closer, nil
}
