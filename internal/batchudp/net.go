package batchudp

import (
	"net"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// Net is the host's network for pion with every UDP socket batching its writes. Give it to
// ICE (webrtc.SettingEngine.SetNet and ice.UDPMuxFromPortWithNet).
type Net struct{ *stdnet.Net }

// NewNet returns the host network with batching UDP sockets.
func NewNet() (*Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &Net{n}, nil
}

// ListenUDP opens a UDP socket whose writes are batched. mDNS sockets stay plain: pion's
// mDNS needs the *net.UDPConn itself (for multicast options through x/net), and sends
// little.
func (n *Net) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil || (laddr != nil && laddr.Port == mdnsPort) {
		return c, err
	}
	return New(c), nil
}

const mdnsPort = 5353

// ListenPacket opens a batching socket for UDP networks, a plain one otherwise.
func (n *Net) ListenPacket(network, address string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
		addr, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return nil, err
		}
		c, err := net.ListenUDP(network, addr)
		if err != nil || addr.Port == mdnsPort {
			return c, err
		}
		return New(c), nil
	}
	return n.Net.ListenPacket(network, address)
}
