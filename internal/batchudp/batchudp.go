// Package batchudp is a UDP socket whose writes are queued and sent in batches with
// sendmmsg(2). An SFU sends each packet of a stream to every viewer within microseconds;
// one system call per batch instead of one per datagram is most of the cost of a viewer.
//
// A writer never waits for the kernel: WriteTo copies the datagram into the queue and
// returns. One goroutine drains the queue; while it is in the kernel, the next batch
// gathers, so batches grow with load and a lone packet still leaves at once.
package batchudp

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// MaxBatch bounds one sendmmsg call; MaxQueue bounds what waits, beyond which a writer sends
// the queue itself (back-pressure rather than unbounded memory).
const (
	MaxBatch = 64
	MaxQueue = 4096
)

// buffers holds datagram copies between a write and its send. A picture fanned out to
// hundreds of viewers is thousands of datagrams at once; a pool keeps them without an
// allocation each, per CPU and without a shared lock, and the garbage collector empties it
// once the viewers have gone.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}

// batchWriter is sendmmsg through x/net (ipv4 and ipv6 share the Message type).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// Conn wraps a *net.UDPConn: reads pass through, writes are batched.
type Conn struct {
	*net.UDPConn
	batch batchWriter

	mu      sync.Mutex
	queue   []datagram
	flushMu sync.Mutex     // one sender at a time: the flusher, or a writer under back-pressure
	msgs    []ipv4.Message // one batch, reused (under flushMu)
	vecs    [][]byte       // each message's one buffer: msgs[i].Buffers is vecs[i:i+1]
	kick    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	addrs   map[netip.AddrPort]*net.UDPAddr // x/net wants net.Addr; one per destination, reused

	Batches, Datagrams, Errors atomic.Uint64
}

type datagram struct {
	buf  *[]byte // from buffers
	addr netip.AddrPort
}

// New wraps conn and starts its sender.
func New(conn *net.UDPConn) *Conn {
	c := &Conn{UDPConn: conn, kick: make(chan struct{}, 1), done: make(chan struct{}), addrs: map[netip.AddrPort]*net.UDPAddr{},
		msgs: make([]ipv4.Message, 0, MaxBatch), vecs: make([][]byte, MaxBatch)}
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil && !la.IP.IsUnspecified() {
		c.batch = ipv6.NewPacketConn(conn)
	} else {
		c.batch = ipv4.NewPacketConn(conn)
	}
	go c.run()
	return c
}

// WriteToAddrPort queues one datagram. Errors of the eventual send are counted, not
// returned: UDP promises no delivery anyway.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	buf := buffers.Get().(*[]byte)
	*buf = append((*buf)[:0], b...)
	c.mu.Lock()
	c.queue = append(c.queue, datagram{buf, addr})
	n := len(c.queue)
	c.mu.Unlock()
	switch {
	case n >= MaxQueue:
		c.flush()
	case n == 1:
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

// WriteTo queues one datagram to a *net.UDPAddr.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("batchudp: not a UDP address")
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// WriteToUDP queues one datagram.
func (c *Conn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) { return c.WriteTo(b, addr) }

// ReadFromAddrPort reads one datagram (pion's allocation-free read path).
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}

func (c *Conn) run() {
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
			c.flush()
		}
	}
}

// flush sends everything queued, MaxBatch datagrams per system call.
func (c *Conn) flush() {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	for {
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		c.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for start := 0; start < len(q); start += MaxBatch {
			part := q[start:min(start+MaxBatch, len(q))]
			c.msgs = c.msgs[:0]
			for i := range part {
				c.vecs[i] = *part[i].buf
				c.msgs = append(c.msgs, ipv4.Message{Buffers: c.vecs[i : i+1 : i+1], Addr: c.udpAddr(part[i].addr)})
			}
			c.send(c.msgs)
		}
		for i := range q {
			buffers.Put(q[i].buf)
			q[i].buf = nil
		}
		clear(c.vecs)
		c.mu.Lock()
		if c.queue == nil {
			c.queue = q[:0] // reuse the slice for the next batch
		}
		c.mu.Unlock()
	}
}

func (c *Conn) send(msgs []ipv4.Message) {
	for len(msgs) > 0 {
		n, err := c.batch.WriteBatch(msgs, 0)
		c.Batches.Add(1)
		if n > 0 {
			c.Datagrams.Add(uint64(n))
		}
		if err != nil {
			// The first datagram failed (an unreachable or odd destination): skip it,
			// keep the rest.
			c.Errors.Add(1)
			n = max(n, 1)
		}
		msgs = msgs[n:]
	}
}

func (c *Conn) udpAddr(ap netip.AddrPort) *net.UDPAddr {
	a := c.addrs[ap]
	if a == nil {
		if len(c.addrs) > 4096 {
			clear(c.addrs)
		}
		a = net.UDPAddrFromAddrPort(ap)
		c.addrs[ap] = a
	}
	return a
}

// Close sends what is queued and closes the socket.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	close(c.done)
	c.flush()
	return c.UDPConn.Close()
}
