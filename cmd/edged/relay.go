package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/edgeflux/edge/edge/turn"
	"github.com/edgeflux/edge/internal/config"
)

// relay is the TURN side of the appliance: the embedded server, an external one, or both,
// and the credentials handed out with each token.
type relay struct {
	server *turn.Server // nil when the embedded server is off
	secret []byte       // the embedded server's TURN REST secret
	cfg    config.TURN
}

// startRelay starts the embedded TURN server when configured. Its secret is derived from
// the token secret, so there is nothing more to configure or leak. With no address to
// announce, it stays off and says so in one line.
func startRelay(cfg config.Config, tokenSecret []byte, log *slog.Logger) (*relay, error) {
	r := &relay{cfg: cfg.TURN}
	if !cfg.TURN.Enabled {
		return r, nil
	}
	mac := hmac.New(sha256.New, tokenSecret)
	mac.Write([]byte("edged TURN REST secret"))
	r.secret = []byte(base64.RawURLEncoding.EncodeToString(mac.Sum(nil)))
	ip := net.ParseIP(cfg.TURN.PublicIP)
	if ip == nil {
		ip = announceIP(cfg.WebRTC)
	}
	if ip == nil {
		log.Warn("embedded TURN server off: no interface address to announce; set turn.public_ip")
		return r, nil
	}
	srv, err := turn.New(turn.Config{
		Listen: cfg.TURN.Listen, PublicIP: ip, TCP: true, Secret: r.secret,
		RelayMinPort: uint16(cfg.TURN.RelayMinPort), RelayMaxPort: uint16(cfg.TURN.RelayMaxPort),
		Logger: log.With("component", "turn"),
	})
	if err != nil {
		return nil, fmt.Errorf("TURN: %w", err)
	}
	r.server = srv
	return r, nil
}

// announceIP picks the first global address of an allowed interface, IPv4 first; loopback
// only when loopback candidates are on (development and tests).
func announceIP(w config.WebRTC) net.IP {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var v6 net.IP
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 ||
			len(w.Interfaces) > 0 && !slices.Contains(w.Interfaces, ifc.Name) {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			if ipn.IP.To4() != nil {
				return ipn.IP
			}
			if v6 == nil {
				v6 = ipn.IP
			}
		}
	}
	if v6 == nil && w.IncludeLoopback {
		return net.IPv4(127, 0, 0, 1)
	}
	return v6
}

// iceServers are the TURN servers and credentials for one participant.
func (r *relay) iceServers(identity string) []turn.ICEServer {
	now := time.Now()
	var out []turn.ICEServer
	if r.server != nil {
		out = append(out, turn.ICEServers(r.server.URLs(), r.secret, identity, r.cfg.CredentialTTL, now)...)
	}
	if len(r.cfg.ExternalURLs) > 0 {
		out = append(out, turn.ICEServers(r.cfg.ExternalURLs, []byte(r.cfg.ExternalSecret), identity, r.cfg.CredentialTTL, now)...)
	}
	return out
}

// stats reports the embedded server's counters (zero when it is off).
func (r *relay) stats() turn.Stats {
	if r.server == nil {
		return turn.Stats{}
	}
	return r.server.Stats()
}

func (r *relay) Close() error {
	if r.server == nil {
		return nil
	}
	if err := r.server.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
