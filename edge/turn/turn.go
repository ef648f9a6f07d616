// Package turn is the edge's embedded TURN server (pion/turn) with time-limited TURN REST
// credentials, and the ice_servers list handed out with a token for it or for an external
// coturn that shares the secret.
package turn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// Defaults for Config's zero values.
const (
	DefaultListen   = ":3478"
	DefaultRealm    = "edge"
	DefaultQuota    = 10
	minSecretLength = 16
)

// Config configures the embedded server.
type Config struct {
	// Listen is the UDP (and, with TCP, TCP) address, "host:port"; default ":3478". Port 0
	// picks a free port (tests).
	Listen string
	// PublicIP is the address clients reach the server and its relays at: it goes into
	// XOR-RELAYED-ADDRESS and into URLs. Required unless Listen names one IP.
	PublicIP net.IP
	// RelayBind is the local IP relay sockets bind to; default Listen's host, or all
	// addresses.
	RelayBind string
	// RelayMinPort and RelayMaxPort limit relay ports to a range (for a firewall); both 0
	// means any port.
	RelayMinPort, RelayMaxPort uint16
	// TCP also accepts TURN over TCP on the same port (relays are UDP either way).
	TCP bool
	// Realm is the TURN realm; default "edge".
	Realm string
	// Secret is the TURN REST shared secret (coturn's static-auth-secret); at least 16 bytes.
	Secret []byte
	// UserQuota is the most allocations one identity may hold at once; default 10.
	UserQuota int
	// Logger receives the server's log lines; default slog.Default().
	Logger *slog.Logger
	// Now is the clock credentials are checked against; default time.Now.
	Now func() time.Time
}

// Stats are the server's counters.
type Stats struct {
	AllocationsActive   int64  // allocations open now
	AllocationsTotal    uint64 // allocations ever created
	AllocationsRejected uint64 // refused for the per-user quota
	AuthFailures        uint64 // requests with unknown, malformed or expired credentials
	BytesToPeers        uint64 // payload relayed from clients to peers
	BytesFromPeers      uint64 // payload relayed from peers to clients
}

// Server is a running embedded TURN server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	srv     *pionturn.Server
	udp     net.PacketConn
	tcp     *trackingListener
	urls    []string
	closed  atomic.Bool
	pionLog pionLogger

	mu     sync.Mutex
	active map[string]int // identity -> open allocations

	allocActive   atomic.Int64
	allocTotal    atomic.Uint64
	allocRejected atomic.Uint64
	authFailures  atomic.Uint64
	bytesToPeers  atomic.Uint64
	bytesFromPeer atomic.Uint64
}

// New validates cfg, listens, and serves until Close.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, active: map[string]int{}, pionLog: newPionLogger(cfg.Logger)}

	lc := net.ListenConfig{}
	udp, err := lc.ListenPacket(context.Background(), "udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("turn: listen udp %s: %w", cfg.Listen, err)
	}
	s.udp = udp
	port := udp.LocalAddr().(*net.UDPAddr).Port
	s.urls = []string{"turn:" + net.JoinHostPort(cfg.PublicIP.String(), strconv.Itoa(port)) + "?transport=udp"}
	if cfg.TCP {
		host, _, _ := net.SplitHostPort(cfg.Listen)
		tcp, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			udp.Close()
			return nil, fmt.Errorf("turn: listen tcp on the udp port %d: %w", port, err)
		}
		s.tcp = &trackingListener{Listener: tcp, conns: map[net.Conn]struct{}{}}
		s.urls = append(s.urls, "turn:"+net.JoinHostPort(cfg.PublicIP.String(), strconv.Itoa(port))+"?transport=tcp")
	}

	var gen pionturn.RelayAddressGenerator = &pionturn.RelayAddressGeneratorStatic{
		RelayAddress: cfg.PublicIP, Address: cfg.RelayBind,
	}
	if cfg.RelayMinPort != 0 {
		gen = &pionturn.RelayAddressGeneratorPortRange{
			RelayAddress: cfg.PublicIP, Address: cfg.RelayBind,
			MinPort: cfg.RelayMinPort, MaxPort: cfg.RelayMaxPort,
		}
	}
	relays := &countingGenerator{RelayAddressGenerator: gen, s: s}
	sc := pionturn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.underQuota,
		LoggerFactory: s.pionLog,
		// authenticate counts the usernames it refuses; pion reports wrong passwords here.
		EventHandler: pionturn.EventHandler{
			OnAuth: func(_, _ net.Addr, _, _, _, _ string, verdict bool) {
				if !verdict {
					s.authFailures.Add(1)
				}
			},
		},
		PacketConnConfigs: []pionturn.PacketConnConfig{{
			PacketConn: udp, RelayAddressGenerator: relays,
		}},
	}
	if s.tcp != nil {
		sc.ListenerConfigs = []pionturn.ListenerConfig{{Listener: s.tcp, RelayAddressGenerator: relays}}
	}
	srv, err := pionturn.NewServer(sc)
	if err != nil {
		udp.Close()
		if s.tcp != nil {
			s.tcp.Close()
		}
		return nil, fmt.Errorf("turn: start: %w", err)
	}
	s.srv = srv
	s.log.Info("TURN server listening", "udp", udp.LocalAddr().String(), "tcp", s.tcp != nil,
		"public_ip", cfg.PublicIP.String(), "realm", cfg.Realm, "user_quota", cfg.UserQuota)
	return s, nil
}

func (c *Config) setDefaults() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%w: turn.listen %q: %w; write host:port, e.g. :3478", ErrConfig, c.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%w: turn.listen %q: port %q is not a number below 65536", ErrConfig, c.Listen, port)
	}
	listenIP := net.ParseIP(host)
	if c.PublicIP == nil {
		if listenIP == nil || listenIP.IsUnspecified() {
			return fmt.Errorf("%w: turn.public_ip is required when turn.listen %q does not name one IP; set it to the address clients reach this device at", ErrConfig, c.Listen)
		}
		c.PublicIP = listenIP
	}
	if c.PublicIP.IsUnspecified() {
		return fmt.Errorf("%w: turn.public_ip %s is unspecified; set the address clients reach this device at", ErrConfig, c.PublicIP)
	}
	if c.RelayBind == "" {
		c.RelayBind = "0.0.0.0"
		if listenIP != nil {
			c.RelayBind = listenIP.String()
		}
	}
	if net.ParseIP(c.RelayBind) == nil {
		return fmt.Errorf("%w: turn.relay_bind %q is not an IP address", ErrConfig, c.RelayBind)
	}
	if (c.RelayMinPort == 0) != (c.RelayMaxPort == 0) || c.RelayMinPort > c.RelayMaxPort {
		return fmt.Errorf("%w: turn.relay_min_port %d and turn.relay_max_port %d: set both, min <= max, or neither", ErrConfig, c.RelayMinPort, c.RelayMaxPort)
	}
	if len(c.Secret) < minSecretLength {
		return fmt.Errorf("%w: turn secret is %d bytes, need at least %d", ErrConfig, len(c.Secret), minSecretLength)
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if c.UserQuota == 0 {
		c.UserQuota = DefaultQuota
	}
	if c.UserQuota < 0 {
		return fmt.Errorf("%w: turn.user_quota %d is negative", ErrConfig, c.UserQuota)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// URLs are the server's TURN URLs for ice_servers (see ICEServers).
func (s *Server) URLs() []string { return append([]string(nil), s.urls...) }

// Addr is the UDP address the server listens on.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Stats returns the counters now.
func (s *Server) Stats() Stats {
	return Stats{
		AllocationsActive:   s.allocActive.Load(),
		AllocationsTotal:    s.allocTotal.Load(),
		AllocationsRejected: s.allocRejected.Load(),
		AuthFailures:        s.authFailures.Load(),
		BytesToPeers:        s.bytesToPeers.Load(),
		BytesFromPeers:      s.bytesFromPeer.Load(),
	}
}

// Close stops the server, closes every allocation and TCP connection, and waits (up to 2 s)
// for the allocations to be gone. It is safe to call more than once.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := s.srv.Close() // closes the UDP socket and the TCP listener, ending pion's loops
	if s.tcp != nil {
		s.tcp.closeConns() // pion leaves accepted connections open
	}
	for deadline := time.Now().Add(2 * time.Second); s.allocActive.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	// pion's loops log their exit after this; nobody needs those lines.
	s.pionLog.lim.mute.Store(true)
	if err != nil {
		return fmt.Errorf("turn: close: %w", err)
	}
	return nil
}

// authenticate is the TURN REST scheme: the username carries its expiry, the password is the
// HMAC of the username with the shared secret. The identity becomes the allocation's user.
func (s *Server) authenticate(ra *pionturn.RequestAttributes) (userID string, key []byte, ok bool) {
	expiry, identity, ok := parseUsername(ra.Username)
	if !ok {
		s.authFailures.Add(1)
		s.log.Debug("TURN credentials refused: username is not <expiry>:<identity>", "username", ra.Username, "from", ra.SrcAddr)
		return "", nil, false
	}
	if !s.cfg.Now().Before(expiry) {
		s.authFailures.Add(1)
		s.log.Debug("TURN credentials refused: expired", "username", ra.Username, "expired", expiry, "from", ra.SrcAddr)
		return "", nil, false
	}
	if identity == "" {
		identity = ra.Username
	}
	// A wrong password fails MESSAGE-INTEGRITY inside pion with this key.
	return identity, pionturn.GenerateAuthKey(ra.Username, ra.Realm, restPassword(s.cfg.Secret, ra.Username)), true
}

// underQuota answers an Allocate with 486 when identity holds its quota; countingGenerator
// enforces the same limit atomically for requests that race past this check.
func (s *Server) underQuota(identity, _ string, _ net.Addr) bool {
	s.mu.Lock()
	n := s.active[identity]
	s.mu.Unlock()
	if n >= s.cfg.UserQuota {
		s.allocRejected.Add(1)
		s.log.Debug("TURN allocation refused: quota", "identity", identity, "allocations", n)
		return false
	}
	return true
}

// reserve counts an allocation for identity, or fails with ErrQuota.
func (s *Server) reserve(identity string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[identity] >= s.cfg.UserQuota {
		s.allocRejected.Add(1)
		return fmt.Errorf("%w: %q holds %d", ErrQuota, identity, s.active[identity])
	}
	s.active[identity]++
	s.allocActive.Add(1)
	s.allocTotal.Add(1)
	return nil
}

func (s *Server) release(identity string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[identity]--; s.active[identity] <= 0 {
		delete(s.active, identity)
	}
	s.allocActive.Add(-1)
}

// trackingListener remembers the TCP connections it accepted so Close can end them.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
