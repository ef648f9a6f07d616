// Package server is provisiond's HTTP API: enrolment with claim tokens, the CA that issues
// and revokes device certificates, signed configuration bundles pushed by long-poll, the
// operators' API used by edgectl, rate limiting and the audit log.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/bundle"
	"github.com/edgeflux/edge/provisioning/claim"
	"github.com/edgeflux/edge/provisioning/store"
)

// Store is the fleet registry the server needs (provisioning/store implements it on SQLite
// and PostgreSQL).
type Store interface {
	CreateClaim(ctx context.Context, c api.ClaimToken, hash string) error
	Claims(ctx context.Context) ([]api.ClaimToken, error)
	Enrol(ctx context.Context, tokenHash string, d store.NewDevice, now time.Time) (api.Device, error)
	DeviceCert(ctx context.Context, id string) (string, error)
	Device(ctx context.Context, id string) (api.Device, error)
	DeviceByCert(ctx context.Context, certSerial string) (api.Device, error)
	Devices(ctx context.Context, group string) ([]api.Device, error)
	Heartbeat(ctx context.Context, id string, hb api.Heartbeat, now time.Time) error
	RenewCert(ctx context.Context, id, oldSerial, newSerial, certPEM string) error
	Seen(ctx context.Context, id string, now time.Time) error
	Bundle(ctx context.Context, id string) (uint64, []byte, error)
	UpdateBundle(ctx context.Context, id string, render func(in store.RenderInput, version uint64) ([]byte, error)) (uint64, error)
	Approve(ctx context.Context, id, actor string) error
	Revoke(ctx context.Context, id, actor string) error
	SetGroup(ctx context.Context, id, group, actor string) error
	SetOverride(ctx context.Context, id, override, actor string) error
	PutGroup(ctx context.Context, name, config, actor string) error
	Groups(ctx context.Context) ([]api.Group, error)
	Audit(ctx context.Context, limit int) ([]api.AuditEntry, error)
}

// Config configures a Server.
type Config struct {
	Store      Store
	CA         *CA
	SigningKey ed25519.PrivateKey
	Operators  map[string]string // SHA-256 hex of an operator token -> operator name
	Logger     *slog.Logger
	// URL is the address devices reach the server at (https://host:port), written into the
	// claim files edgectl makes.
	URL string
	// EnrolRate and EnrolBurst limit enrolment attempts per client address (default 5/s,
	// burst 100).
	EnrolRate  float64
	EnrolBurst int
	// OnlineWithin: a device seen within this long is online (default 90 s).
	OnlineWithin time.Duration
	// MaxWait caps a long-poll (default 30 s).
	MaxWait time.Duration
	// CertValidity of device certificates (default 5 years).
	CertValidity time.Duration
	Now          func() time.Time
}

// Server serves the provisioning API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	enrol   *limiter
	hub     hub
	fleet   string // base64 public key
	handler http.Handler
	metrics counters
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.CA == nil || len(cfg.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("provisioning server: Store, CA and SigningKey are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EnrolRate == 0 {
		cfg.EnrolRate, cfg.EnrolBurst = 5, 100
	}
	if cfg.OnlineWithin == 0 {
		cfg.OnlineWithin = 90 * time.Second
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 30 * time.Second
	}
	if cfg.CertValidity == 0 {
		cfg.CertValidity = 5 * 365 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, enrol: newLimiter(cfg.EnrolRate, cfg.EnrolBurst),
		fleet: base64.StdEncoding.EncodeToString(cfg.SigningKey.Public().(ed25519.PublicKey))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathEnrol, s.handleEnrol)
	mux.HandleFunc("GET "+api.PathBundle, s.device(s.handleBundle))
	mux.HandleFunc("POST "+api.PathHeartbeat, s.device(s.handleHeartbeat))
	mux.HandleFunc("POST "+api.PathRenew, s.device(s.handleRenew))
	mux.HandleFunc("POST /v1/admin/claims", s.admin(s.handleClaimCreate))
	mux.HandleFunc("GET /v1/admin/claims", s.admin(s.handleClaims))
	mux.HandleFunc("GET /v1/admin/devices", s.admin(s.handleDevices))
	mux.HandleFunc("GET /v1/admin/devices/{id}", s.admin(s.handleDevice))
	mux.HandleFunc("POST /v1/admin/devices/{id}/approve", s.admin(s.handleApprove))
	mux.HandleFunc("POST /v1/admin/devices/{id}/revoke", s.admin(s.handleRevoke))
	mux.HandleFunc("PUT /v1/admin/devices/{id}/group", s.admin(s.handleAssign))
	mux.HandleFunc("PUT /v1/admin/devices/{id}/override", s.admin(s.handleOverride))
	mux.HandleFunc("POST /v1/admin/devices/{id}/push", s.admin(s.handlePush))
	mux.HandleFunc("GET /v1/admin/groups", s.admin(s.handleGroups))
	mux.HandleFunc("PUT /v1/admin/groups/{name}", s.admin(s.handleGroupPut))
	mux.HandleFunc("GET /v1/admin/audit", s.admin(s.handleAudit))
	s.handler = mux
	return s, nil
}

// Handler is the API.
func (s *Server) Handler() http.Handler { return s.handler }

// FleetKey is the public half of the bundle-signing key.
func (s *Server) FleetKey() ed25519.PublicKey {
	return s.cfg.SigningKey.Public().(ed25519.PublicKey)
}

// TLSConfig is the listener's TLS: a server certificate from the CA for hosts, and client
// certificates from the CA verified when a client offers one (devices after enrolment).
func (s *Server) TLSConfig(hosts []string) (*tls.Config, error) {
	cert, err := s.cfg.CA.ServerCertificate(hosts)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.cfg.CA.Cert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}

func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, maxBody+1))
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// handleEnrol: POST /v1/enrol. A claim token and a CSR in, a device certificate out.
func (s *Server) handleEnrol(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	if !s.enrol.allow(ip, s.cfg.Now()) {
		s.metrics.enrolLimited.Add(1)
		s.log.Warn("enrolment rate limited", "remote", ip)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too many enrolment attempts; retry later")
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	req, csr, hw, id, err := DecodeEnrol(body)
	if err != nil {
		s.metrics.enrolRefused.Add(1)
		s.log.Warn("enrolment refused", "remote", ip, "err", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := s.cfg.Now()
	cert, certPEM, err := s.cfg.CA.IssueDevice(csr, id, hw, s.cfg.CertValidity)
	if err != nil {
		s.log.Error("enrolment failed", "device", id, "err", err)
		writeError(w, http.StatusInternalServerError, "issuing the certificate failed")
		return
	}
	d, err := s.cfg.Store.Enrol(r.Context(), claim.HashToken(req.ClaimToken), store.NewDevice{
		ID: id, Serial: hw.Serial, Board: hw.Board, MACs: hw.MACs, CertSerial: SerialHex(cert.SerialNumber), CertPEM: string(certPEM),
	}, now)
	switch {
	case errors.Is(err, store.ErrClaimUnknown), errors.Is(err, store.ErrClaimUsed), errors.Is(err, store.ErrClaimExpired), errors.Is(err, store.ErrDeviceRevoked):
		s.metrics.enrolRefused.Add(1)
		s.log.Warn("enrolment refused", "remote", ip, "device", id, "serial", hw.Serial, "err", err)
		writeError(w, http.StatusForbidden, err.Error())
		return
	case err != nil:
		s.log.Error("enrolment failed", "device", id, "err", err)
		writeError(w, http.StatusInternalServerError, "storing the device failed")
		return
	}
	if d.CertSerial != SerialHex(cert.SerialNumber) { // the same device enrolling again: its stored certificate
		stored, err := s.cfg.Store.DeviceCert(r.Context(), id)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "reading the device failed")
			return
		}
		certPEM = []byte(stored)
	}
	s.metrics.enrolled.Add(1)
	s.log.Info("device enrolled", "device", id, "serial", hw.Serial, "board", hw.Board, "group", d.Group, "status", d.Status)
	if d.Status == api.StatusActive {
		if _, err := s.push(r.Context(), id); err != nil && !errors.Is(err, errNoTemplate) {
			s.log.Warn("no configuration for the new device", "device", id, "err", err)
		}
	}
	writeJSON(w, http.StatusCreated, api.EnrolResponse{
		DeviceID: id, Certificate: string(certPEM), CA: string(s.cfg.CA.CertPEM), FleetKey: s.fleet, Status: d.Status,
	})
}

type deviceHandler func(w http.ResponseWriter, r *http.Request, d api.Device)

// device authenticates a device by its client certificate and checks, on every request, that
// the certificate is not revoked.
func (s *Server) device(h deviceHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			writeError(w, http.StatusUnauthorized, "a device client certificate is required")
			return
		}
		cert := r.TLS.VerifiedChains[0][0]
		d, err := s.cfg.Store.DeviceByCert(r.Context(), SerialHex(cert.SerialNumber))
		switch {
		case errors.Is(err, store.ErrDeviceRevoked):
			s.metrics.revokedRefused.Add(1)
			s.log.Warn("request with a revoked certificate refused", "device", cert.Subject.CommonName, "cert_serial", SerialHex(cert.SerialNumber), "remote", clientIP(r))
			writeError(w, http.StatusForbidden, "certificate revoked")
			return
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusForbidden, "certificate is not known to this server")
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, "registry unavailable")
			return
		}
		if d.Status == api.StatusRevoked || d.ID != cert.Subject.CommonName {
			writeError(w, http.StatusForbidden, "certificate revoked")
			return
		}
		h(w, r, d)
	}
}

// handleBundle: GET /v1/device/bundle?after=N&wait=S. Answers the device's newest bundle at
// once if its version is above N, else waits up to S seconds for one (204 if none came).
func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request, d api.Device) {
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil && r.URL.Query().Get("after") != "" {
		writeError(w, http.StatusBadRequest, "after must be a version number")
		return
	}
	wait := time.Duration(0)
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "wait must be seconds")
			return
		}
		wait = min(time.Duration(n)*time.Second, s.cfg.MaxWait)
	}
	ctx := r.Context()
	s.cfg.Store.Seen(ctx, d.ID, s.cfg.Now())
	timer := time.NewTimer(wait)
	defer timer.Stop()
	s.metrics.longPolls.Add(1)
	defer s.metrics.longPolls.Add(-1)
	for {
		woken := s.hub.wait(d.ID)
		version, b, err := s.cfg.Store.Bundle(ctx, d.ID)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "registry unavailable")
			return
		}
		if version > after && b != nil {
			w.Header().Set("Content-Type", api.BundleMediaType)
			w.Header().Set("X-Bundle-Version", strconv.FormatUint(version, 10))
			w.Write(b)
			return
		}
		select {
		case <-woken:
			// Woken by a new bundle, or by a revocation: check the certificate again.
			if cur, err := s.cfg.Store.DeviceByCert(ctx, SerialHex(r.TLS.VerifiedChains[0][0].SerialNumber)); errors.Is(err, store.ErrDeviceRevoked) || cur.Status == api.StatusRevoked {
				writeError(w, http.StatusForbidden, "certificate revoked")
				return
			}
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-ctx.Done():
			// Shutting down (or the device went away): never an empty 200.
			writeError(w, http.StatusServiceUnavailable, "server shutting down; retry")
			return
		}
	}
}

// handleHeartbeat: POST /v1/device/heartbeat.
func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request, d api.Device) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	hb, err := DecodeHeartbeat(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.cfg.Store.Heartbeat(r.Context(), d.ID, hb, s.cfg.Now()); err != nil {
		writeError(w, http.StatusInternalServerError, "registry unavailable")
		return
	}
	if hb.LastError != "" && hb.LastError != d.LastError {
		s.log.Warn("device reports an error", "device", d.ID, "config_version", hb.ConfigVersion, "error", hb.LastError)
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleRenew: POST /v1/device/renew. A new certificate for the same key, same device ID and
// hardware identity; the old certificate stops working.
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request, d api.Device) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	csr, err := DecodeRenew(body, r.TLS.VerifiedChains[0][0])
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	hw := HardwareIdentity{Serial: d.Serial, Board: d.Board, MACs: d.MACs}
	cert, certPEM, err := s.cfg.CA.IssueDevice(csr, d.ID, hw, s.cfg.CertValidity)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "issuing the certificate failed")
		return
	}
	presented := SerialHex(r.TLS.VerifiedChains[0][0].SerialNumber)
	if err := s.cfg.Store.RenewCert(r.Context(), d.ID, presented, SerialHex(cert.SerialNumber), string(certPEM)); err != nil {
		writeError(w, http.StatusConflict, "the certificate changed meanwhile; retry")
		return
	}
	s.log.Info("device certificate renewed", "device", d.ID, "cert_serial", SerialHex(cert.SerialNumber), "not_after", cert.NotAfter)
	writeJSON(w, http.StatusOK, api.RenewResponse{Certificate: string(certPEM)})
}

// push renders, signs and stores the next bundle of a device and wakes its long-poll.
func (s *Server) push(ctx context.Context, id string) (uint64, error) {
	v, err := s.cfg.Store.UpdateBundle(ctx, id, func(in store.RenderInput, version uint64) ([]byte, error) {
		if !in.HasGroup {
			return nil, fmt.Errorf("group %q: %w", in.Device.Group, errNoTemplate)
		}
		if in.Device.Status != api.StatusActive {
			return nil, fmt.Errorf("device is %s", in.Device.Status)
		}
		yml, err := Render(in.GroupConfig, in.Device.Override, "device "+id)
		if err != nil {
			return nil, err
		}
		return bundle.Sign(s.cfg.SigningKey, bundle.Payload{Device: id, Version: version, IssuedAt: s.cfg.Now().UTC(), Config: yml})
	})
	if err != nil {
		s.metrics.pushFailed.Add(1)
		return 0, err
	}
	s.metrics.bundles.Add(1)
	s.hub.notify(id)
	return v, nil
}

// Admin API.

type adminHandler func(w http.ResponseWriter, r *http.Request, actor string)

// admin authenticates an operator by bearer token; the operator's name is the actor in the
// audit log.
func (s *Server) admin(h adminHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		name, known := s.cfg.Operators[claim.HashToken(tok)]
		if !ok || !known {
			s.log.Warn("operator request refused: bad or missing token", "remote", clientIP(r), "path", r.URL.Path)
			writeError(w, http.StatusUnauthorized, "an operator bearer token is required")
			return
		}
		h(w, r, name)
	}
}

func (s *Server) handleClaimCreate(w http.ResponseWriter, r *http.Request, actor string) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req, ttl, err := DecodeClaimCreate(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, err := claim.NewToken()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	now := s.cfg.Now().UTC()
	c := api.ClaimToken{ID: store.NewID("clm_"), Group: req.Group, MaxUses: req.MaxUses, ExpiresAt: now.Add(ttl),
		RequireApproval: req.RequireApproval, Note: req.Note, CreatedBy: actor, CreatedAt: now}
	if err := s.cfg.Store.CreateClaim(r.Context(), c, claim.HashToken(tok)); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info("claim token created", "claim", c.ID, "group", c.Group, "max_uses", c.MaxUses, "expires_at", c.ExpiresAt, "by", actor)
	c.Token = tok
	if s.cfg.URL != "" {
		file, err := claim.Claim{Server: s.cfg.URL, CASHA256: s.cfg.CA.Fingerprint(), Token: tok}.Encode()
		if err == nil {
			c.Claim = string(file)
		}
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Server) handleClaims(w http.ResponseWriter, r *http.Request, actor string) {
	cs, err := s.cfg.Store.Claims(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

func (s *Server) online(d *api.Device) {
	d.Online = d.Status != api.StatusRevoked && !d.LastSeen.IsZero() && s.cfg.Now().Sub(d.LastSeen) < s.cfg.OnlineWithin
}

func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request, actor string) {
	ds, err := s.cfg.Store.Devices(r.Context(), r.URL.Query().Get("group"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	for i := range ds {
		s.online(&ds[i])
	}
	if ds == nil {
		ds = []api.Device{}
	}
	writeJSON(w, http.StatusOK, ds)
}

func (s *Server) deviceOr404(w http.ResponseWriter, r *http.Request) (api.Device, bool) {
	d, err := s.cfg.Store.Device(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("device %q not found", r.PathValue("id")))
		return d, false
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return d, false
	}
	s.online(&d)
	return d, true
}

func (s *Server) handleDevice(w http.ResponseWriter, r *http.Request, actor string) {
	if d, ok := s.deviceOr404(w, r); ok {
		writeJSON(w, http.StatusOK, d)
	}
}

func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request, actor string) {
	d, ok := s.deviceOr404(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Store.Approve(r.Context(), d.ID, actor); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.log.Info("device approved", "device", d.ID, "by", actor)
	s.pushAndAnswer(w, r, d.ID)
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, actor string) {
	d, ok := s.deviceOr404(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Store.Revoke(r.Context(), d.ID, actor); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info("device revoked", "device", d.ID, "cert_serial", d.CertSerial, "by", actor)
	s.hub.notify(d.ID) // a waiting long-poll ends; the next request is refused
	d, _ = s.cfg.Store.Device(r.Context(), d.ID)
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) handleAssign(w http.ResponseWriter, r *http.Request, actor string) {
	d, ok := s.deviceOr404(w, r)
	if !ok {
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a, err := DecodeAssign(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.cfg.Store.SetGroup(r.Context(), d.ID, a.Group, actor); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info("device assigned", "device", d.ID, "group", a.Group, "by", actor)
	s.pushAndAnswer(w, r, d.ID)
}

func (s *Server) handleOverride(w http.ResponseWriter, r *http.Request, actor string) {
	d, ok := s.deviceOr404(w, r)
	if !ok {
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o, err := DecodeOverride(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Refuse an override that would make a configuration edged rejects, before storing it.
	groups, err := s.cfg.Store.Groups(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	for _, g := range groups {
		if g.Name == d.Group {
			if _, err := Render(g.Config, o.Config, "device "+d.ID); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
	}
	if err := s.cfg.Store.SetOverride(r.Context(), d.ID, o.Config, actor); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info("device override set", "device", d.ID, "bytes", len(o.Config), "by", actor)
	s.pushAndAnswer(w, r, d.ID)
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request, actor string) {
	if d, ok := s.deviceOr404(w, r); ok {
		s.pushAndAnswer(w, r, d.ID)
	}
}

// pushAndAnswer makes the device's next bundle and answers with the device.
func (s *Server) pushAndAnswer(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := s.push(r.Context(), id); err != nil && !errors.Is(err, errNoTemplate) {
		writeError(w, http.StatusConflict, "the change is stored but no bundle was made: "+err.Error())
		return
	}
	d, err := s.cfg.Store.Device(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.online(&d)
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) handleGroups(w http.ResponseWriter, r *http.Request, actor string) {
	gs, err := s.cfg.Store.Groups(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if gs == nil {
		gs = []api.Group{}
	}
	writeJSON(w, http.StatusOK, gs)
}

// handleGroupPut stores a group's template and pushes a new bundle to each of its active
// devices.
func (s *Server) handleGroupPut(w http.ResponseWriter, r *http.Request, actor string) {
	name := r.PathValue("name")
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	g, err := DecodeGroupPut(body, name)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.cfg.Store.PutGroup(r.Context(), name, g.Config, actor); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	devices, err := s.cfg.Store.Devices(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res := api.GroupPutResult{Group: name}
	var failed []string
	for _, d := range devices {
		if d.Status != api.StatusActive {
			continue
		}
		if _, err := s.push(r.Context(), d.ID); err != nil {
			failed = append(failed, d.ID+": "+err.Error())
			continue
		}
		res.Devices++
	}
	s.log.Info("group configuration pushed", "group", name, "devices", res.Devices, "failed", len(failed), "by", actor)
	if len(failed) > 0 {
		writeError(w, http.StatusConflict, fmt.Sprintf("group stored; %d devices got it, %d did not:\n%s", res.Devices, len(failed), strings.Join(failed, "\n")))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, actor string) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit must be 1..10000")
			return
		}
		limit = n
	}
	es, err := s.cfg.Store.Audit(r.Context(), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if es == nil {
		es = []api.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, es)
}
