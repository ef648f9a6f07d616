package turn

import (
	"net"
	"sync"

	pionturn "github.com/pion/turn/v5"
)

// countingGenerator wraps the relay sockets pion/turn allocates: it holds the per-identity
// quota for as long as the socket is open and counts the bytes relayed through it.
type countingGenerator struct {
	pionturn.RelayAddressGenerator
	s *Server
}

func (g *countingGenerator) AllocatePacketConn(conf pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if err := g.s.reserve(conf.UserID); err != nil {
		return nil, nil, err
	}
	conn, addr, err := g.RelayAddressGenerator.AllocatePacketConn(conf)
	if err != nil {
		g.s.release(conf.UserID)
		return nil, nil, err
	}
	return &countingConn{PacketConn: conn, s: g.s, identity: conf.UserID}, addr, nil
}

type countingConn struct {
	net.PacketConn
	s        *Server
	identity string
	once     sync.Once
}

// ReadFrom is a packet from a peer, to be relayed to the client.
func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if n > 0 {
		c.s.bytesFromPeer.Add(uint64(n))
	}
	return n, addr, err
}

// WriteTo is a client's packet going out to a peer.
func (c *countingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if n > 0 {
		c.s.bytesToPeers.Add(uint64(n))
	}
	return n, err
}

func (c *countingConn) Close() error {
	c.once.Do(func() { c.s.release(c.identity) })
	return c.PacketConn.Close()
}
