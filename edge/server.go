package edge

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/edge/turn"
	"github.com/edgeflux/edge/internal/metrics"
	"github.com/edgeflux/edge/internal/token"
)

// Config is what the edge needs from the daemon's configuration.
type Config struct {
	// Secret signs and verifies access tokens (HS256); at least 32 bytes.
	Secret []byte
	// TrustLoopback hands a token to pages opened from this machine (development only).
	TrustLoopback bool
	// DefaultRoom is the room of the appliance camera and of /whep/camera.
	DefaultRoom string

	UDPPort         int
	Interfaces      []string
	IncludeLoopback bool
	MDNS            bool
	NAT1To1IPs      []string
	// MaxViewers bounds WHEP sessions; MaxParticipants bounds each room.
	MaxViewers      int
	MaxParticipants int
	// ICEServers returns the STUN/TURN servers (with credentials) handed to a participant
	// with its token, in the WebSocket's joined message and WHIP/WHEP Link headers.
	ICEServers func(identity string) []turn.ICEServer
	// TURNStats reports the embedded TURN server's counters for /metrics (nil: none).
	TURNStats func() turn.Stats

	// Status says whether the camera's media flows and what it is; the edge knows no camera.
	Status func() StreamStatus
	// SetPrivacy and SetInCall carry operators' and the page's switches to the daemon; nil
	// leaves the endpoints answering 501.
	SetPrivacy func(on bool)
	SetInCall  func(joined bool)
	// ViewerFeedback receives the bandwidth share (bit/s from REMB, 0 before one came) and
	// loss of each viewer of the camera's top layer; ViewerLeft says a viewer is gone or
	// moved to a lower layer. The daemon turns them into the encoder's bitrate.
	ViewerFeedback func(viewer string, estimateBps int, loss float64)
	ViewerLeft     func(viewer string)
}

// StreamStatus is what /api/status reports and the page shows.
type StreamStatus struct {
	Live        bool    `json:"live"`
	Starting    bool    `json:"starting"`    // not live yet, nothing wrong: viewers are accepted
	Privacy     bool    `json:"privacy"`     // privacy mute: viewers see black
	InCall      bool    `json:"in_call"`     // false after the appliance left the call
	TargetKbps  float64 `json:"target_kbps"` // the encoder's bitrate target from viewers' feedback
	Source      string  `json:"source"`
	Encoder     string  `json:"encoder"`
	Width       int     `json:"width"`
	Height      int     `json:"height"`
	FPS         float64 `json:"fps"`
	BitrateKbps float64 `json:"bitrate_kbps"`
	Viewers     int     `json:"viewers"`
	Error       string  `json:"error"`
}

// Server is the edge SFU with its HTTP side: rooms, the WebSocket room protocol, WHIP and
// WHEP, the status API and the web page.
type Server struct {
	cfg      Config
	log      *slog.Logger
	apis     *apis
	mux      *http.ServeMux
	index    []byte
	closing  chan struct{}
	closeErr error
	closed   sync.Once
	metrics  counters
	registry *metrics.Registry

	mu       sync.Mutex
	rooms    map[string]*sfu.Room
	sessions map[string]*session // WHIP and WHEP sessions by id
	clients  map[*rtcClient]struct{}
	camera   *sfu.Participant
	wg       sync.WaitGroup

	releaseTimer *time.Timer // releaseWhenIdle's pending memory release
}

//go:embed web
var webFiles embed.FS

// tokenMeta is the tag in index.html where a trusted page receives a token.
const tokenMeta = `<meta name="edge-token" content="">`

// CameraID is the appliance camera's participant identity in the default room.
const CameraID = "camera"

// New builds a server; Serve runs it.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if len(cfg.Secret) < token.MinSecretLen {
		return nil, fmt.Errorf("edge: an access-token secret of at least %d bytes is required", token.MinSecretLen)
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 200
	}
	if cfg.MaxParticipants <= 0 {
		cfg.MaxParticipants = 50
	}
	cfg.DefaultRoom = cmp.Or(cfg.DefaultRoom, "main")
	if cfg.Status == nil {
		cfg.Status = func() StreamStatus { return StreamStatus{Live: true} }
	}
	if cfg.ICEServers == nil {
		cfg.ICEServers = func(string) []turn.ICEServer { return nil }
	}
	a, err := newAPIs(cfg)
	if err != nil {
		return nil, err
	}
	index, err := webFiles.ReadFile("web/index.html")
	if err != nil {
		return nil, fmt.Errorf("edge: embedded page: %w", err)
	}
	s := &Server{
		cfg: cfg, log: log, apis: a, index: index, closing: make(chan struct{}),
		rooms: map[string]*sfu.Room{}, sessions: map[string]*session{}, clients: map[*rtcClient]struct{}{},
	}
	s.registerMetrics()
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	static, _ := fs.Sub(webFiles, "web")
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{$}", s.handleIndex)
	s.mux.Handle("GET /", http.FileServerFS(static))
	s.mux.HandleFunc("GET /api/status", s.admin(s.handleStatus))
	s.mux.HandleFunc("GET /api/rooms", s.admin(s.handleRooms))
	s.mux.HandleFunc("GET /api/sessions", s.admin(s.handleSessions))
	s.mux.HandleFunc("POST /api/privacy", s.admin(s.handleSwitch("on", s.cfg.SetPrivacy)))
	s.mux.HandleFunc("POST /api/call", s.admin(s.handleSwitch("joined", s.cfg.SetInCall)))
	s.mux.HandleFunc("GET /metrics", s.admin(s.registry.Handler().ServeHTTP))
	s.mux.HandleFunc("GET /rtc", s.handleRTC)
	s.mux.HandleFunc("POST /whip/{room}", s.handleWHIPOffer)
	s.mux.HandleFunc("POST /whep/{room}/{participant}", s.handleWHEPOffer)
	s.mux.HandleFunc("POST /whep/{stream}", s.handleWHEPOffer)
	s.mux.HandleFunc("PATCH /sessions/{id}", s.handleSessionPatch)
	s.mux.HandleFunc("DELETE /sessions/{id}", s.handleSessionDelete)
	s.mux.HandleFunc("OPTIONS /whip/", s.handlePreflight)
	s.mux.HandleFunc("OPTIONS /whep/", s.handlePreflight)
	s.mux.HandleFunc("OPTIONS /sessions/", s.handlePreflight)
}

// SetLimits changes the viewer and participant limits (a configuration reload); sessions
// beyond a lowered limit stay, new ones wait.
func (s *Server) SetLimits(maxViewers, maxParticipants int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.MaxViewers, s.cfg.MaxParticipants = maxViewers, maxParticipants
}

func (s *Server) maxParticipants() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.MaxParticipants
}

// Room returns the named room, creating it.
func (s *Server) Room(name string) *sfu.Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	if r == nil {
		r = sfu.NewRoom(name, s.log.With("room", name))
		s.rooms[name] = r
	}
	return r
}

// existingRoom returns the named room or nil.
func (s *Server) existingRoom(name string) *sfu.Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[name]
}

// PublishCamera makes t a track of the appliance camera, participant "camera" of the
// default room: every participant receives it, and /whep/camera plays it.
func (s *Server) PublishCamera(t *sfu.Track) {
	room := s.Room(s.cfg.DefaultRoom)
	s.mu.Lock()
	p := s.camera
	if p == nil {
		p = sfu.NewParticipant(CameraID, "Room camera", nil)
		s.camera = p
	}
	s.mu.Unlock()
	if room.Participant(CameraID) != p {
		room.Join(p)
	}
	room.Publish(p, t)
}

// Viewers is the number of WHEP sessions and room participants that receive media.
func (s *Server) Viewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.clients)
	for _, sess := range s.sessions {
		if sess.sub != nil {
			n++
		}
	}
	return n
}

// Handler is the HTTP handler, with CORS so WHEP players on other origins can use it.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "Location, Accept-Patch, Retry-After")
		s.mux.ServeHTTP(w, r)
	})
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	page := s.index
	if s.cfg.TrustLoopback && fromLoopback(r) {
		page = bytes.Replace(page, []byte(tokenMeta),
			[]byte(`<meta name="edge-token" content="`+html.EscapeString(s.pageToken())+`">`), 1)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(page)
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	st := s.cfg.Status()
	st.Viewers = s.Viewers()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(st)
}

// handleSwitch serves a JSON body {"<field>": true|false} by calling set, then answers with
// the status so the caller sees the effect.
func (s *Server) handleSwitch(field string, set func(bool)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if set == nil {
			httpError(w, http.StatusNotImplemented, "this appliance has no such switch")
			return
		}
		var body map[string]*bool
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10))
		if err := dec.Decode(&body); err != nil || len(body) != 1 || body[field] == nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf(`send a JSON object {"%s": true} or {"%s": false}`, field, field))
			return
		}
		set(*body[field])
		s.handleStatus(w, r)
	}
}

// Serve serves HTTP on ln until ctx is done, then shuts down within the grace period.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// Close ends every session and releases the media port. It is idempotent.
func (s *Server) Close() error {
	s.closed.Do(func() {
		close(s.closing)
		s.mu.Lock()
		sessions := make([]*session, 0, len(s.sessions))
		for _, sess := range s.sessions {
			sessions = append(sessions, sess)
		}
		clients := make([]*rtcClient, 0, len(s.clients))
		for c := range s.clients {
			clients = append(clients, c)
		}
		rooms := s.rooms
		s.mu.Unlock()
		for _, sess := range sessions {
			s.endSession(sess, "shutting down")
		}
		for _, c := range clients {
			c.end("shutdown")
		}
		s.wg.Wait()
		s.mu.Lock()
		if s.releaseTimer != nil {
			s.releaseTimer.Stop()
		}
		s.mu.Unlock()
		for _, r := range rooms {
			r.Close()
		}
		if s.apis.mux != nil {
			s.closeErr = s.apis.mux.Close()
		}
	})
	return s.closeErr
}
