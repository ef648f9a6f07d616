package edge

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Config is what the edge needs from the daemon's configuration.
type Config struct {
	// Token is the bearer token every API endpoint requires.
	Token string
	// TrustLoopback hands the token to pages opened from this machine (development only).
	TrustLoopback bool

	UDPPort         int
	Interfaces      []string
	IncludeLoopback bool
	MDNS            bool
	NAT1To1IPs      []string
	MaxViewers      int

	// Status says whether the published media flows and what it is; the edge knows no camera.
	Status func() StreamStatus
	// SetPrivacy and SetInCall carry operators' and the page's switches to the daemon; nil
	// leaves the endpoints answering 501.
	SetPrivacy func(on bool)
	SetInCall  func(joined bool)
	// ViewerFeedback receives each viewer's latest bandwidth estimate (bit/s from REMB, 0
	// before one came) and loss fraction (from receiver reports); ViewerLeft says a viewer is
	// gone. The daemon turns them into the encoder's bitrate.
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

// Server serves the web page, the WHEP endpoints and the status API.
type Server struct {
	cfg      Config
	log      *slog.Logger
	api      *webrtc.API
	udpMux   io.Closer
	mux      *http.ServeMux
	index    []byte
	closing  chan struct{}
	closeErr error
	closed   sync.Once

	mu       sync.Mutex
	tracks   map[string]*Track
	sessions map[string]*whepSession
	wg       sync.WaitGroup

	nacks, retransmits atomic.Uint64
}

//go:embed web
var webFiles embed.FS

// tokenMeta is the tag in index.html where a trusted page receives the token.
const tokenMeta = `<meta name="edge-token" content="">`

// New builds a server; Serve runs it.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.Token == "" {
		return nil, errors.New("edge: an access token is required")
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 200
	}
	if cfg.Status == nil {
		cfg.Status = func() StreamStatus { return StreamStatus{Live: true} }
	}
	api, udpMux, err := newAPI(cfg)
	if err != nil {
		return nil, err
	}
	index, err := webFiles.ReadFile("web/index.html")
	if err != nil {
		return nil, fmt.Errorf("edge: embedded page: %w", err)
	}
	s := &Server{
		cfg: cfg, log: log, api: api, udpMux: udpMux, index: index,
		closing: make(chan struct{}), tracks: map[string]*Track{}, sessions: map[string]*whepSession{},
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	static, _ := fs.Sub(webFiles, "web")
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{$}", s.handleIndex)
	s.mux.Handle("GET /", http.FileServerFS(static))
	s.mux.HandleFunc("GET /api/status", requireToken(s.cfg.Token, s.handleStatus))
	s.mux.HandleFunc("POST /api/privacy", requireToken(s.cfg.Token, s.handleSwitch("on", s.cfg.SetPrivacy)))
	s.mux.HandleFunc("POST /api/call", requireToken(s.cfg.Token, s.handleSwitch("joined", s.cfg.SetInCall)))
	s.mux.HandleFunc("POST /whep/{stream}", requireToken(s.cfg.Token, s.handleWHEPOffer))
	s.mux.HandleFunc("PATCH /whep/{stream}/sessions/{id}", requireToken(s.cfg.Token, s.handleWHEPPatch))
	s.mux.HandleFunc("DELETE /whep/{stream}/sessions/{id}", requireToken(s.cfg.Token, s.handleWHEPDelete))
	s.mux.HandleFunc("OPTIONS /whep/", s.handlePreflight)
}

// Publish makes a track available as /whep/<name>.
func (s *Server) Publish(name string, t *Track) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracks[name] = t
}

func (s *Server) track(name string) *Track {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tracks[name]
}

// Viewers is the number of WHEP sessions.
func (s *Server) Viewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
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

// handlePreflight answers browsers' CORS preflight for the WHEP endpoints.
func (s *Server) handlePreflight(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	page := s.index
	if s.cfg.TrustLoopback && fromLoopback(r) {
		page = bytes.Replace(page, []byte(tokenMeta),
			[]byte(`<meta name="edge-token" content="`+html.EscapeString(s.cfg.Token)+`">`), 1)
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
		sessions := make([]*whepSession, 0, len(s.sessions))
		for _, sess := range s.sessions {
			sessions = append(sessions, sess)
		}
		s.mu.Unlock()
		for _, sess := range sessions {
			s.endSession(sess, "shutting down")
		}
		s.wg.Wait()
		if s.udpMux != nil {
			s.closeErr = s.udpMux.Close()
		}
	})
	return s.closeErr
}
