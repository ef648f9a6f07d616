// Package device is the appliance's side of provisioning: its key and hardware identity,
// enrolment with the claim from the boot partition, then mTLS only: long-polling signed
// configuration bundles, applying them atomically with rollback, and heartbeats.
package device

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/atomicfile"
	"github.com/edgeflux/edge/provisioning/claim"
)

// Identity files in the state directory.
const (
	CertFile     = "device.crt"
	CAFile       = "ca.crt"
	IdentityFile = "identity.json" // written last: the device is enrolled when it exists
)

// Identity is what enrolment gave the device.
type Identity struct {
	DeviceID string `json:"device_id"`
	Server   string `json:"server"`
	FleetKey string `json:"fleet_key"` // base64 Ed25519
	Status   string `json:"status"`
}

// Status is what edged says about itself, for the heartbeat.
type Status struct {
	Health  string // ok, degraded or error
	Camera  string
	Encoder string
}

// Config configures an Agent.
type Config struct {
	StateDir   string
	ConfigPath string // edged's configuration file
	ClaimPath  string // the claim file on the boot partition (written by the flasher)
	// ImageClaimPath is a claim built into the image, used when ClaimPath does not exist (its
	// token cannot be removed from a read-only image: only the hash is stored server-side, and
	// the token's quota and expiry bound what a copy can do).
	ImageClaimPath string
	Hardware       Hardware
	Hooks          Hooks
	// Status reports edged's state for heartbeats (nil: health "ok" while a configuration is in
	// force).
	Status          func(ctx context.Context) Status
	AgentVersion    string
	FirmwareVersion string
	HeartbeatEvery  time.Duration // default 30 s
	PollWait        time.Duration // long-poll wait asked of the server; default 25 s
	BackoffMin      time.Duration // default 1 s
	BackoffMax      time.Duration // default 60 s
	ReadyTimeout    time.Duration
	// RenewBefore: the device certificate is renewed once it expires within this long
	// (default 30 days); checked at start and with every heartbeat.
	RenewBefore time.Duration
	Logger      *slog.Logger
}

// Agent runs the device side.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	start   time.Time
	applier *Applier

	mu       sync.Mutex
	lastErr  string
	identity Identity
	kick     chan struct{}
}

// New returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.StateDir == "" || cfg.ConfigPath == "" {
		return nil, errors.New("device agent: StateDir and ConfigPath are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HeartbeatEvery == 0 {
		cfg.HeartbeatEvery = 30 * time.Second
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = 25 * time.Second
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = time.Minute
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = 30 * 24 * time.Hour
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &Agent{cfg: cfg, log: cfg.Logger, start: time.Now(), kick: make(chan struct{}, 1)}, nil
}

// Identity is the device's identity (zero before enrolment).
func (a *Agent) Identity() Identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.identity
}

// Applier is the agent's applier (nil before enrolment).
func (a *Agent) Applier() *Applier {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applier
}

func (a *Agent) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.lastErr = ""
	} else {
		a.lastErr = err.Error()
	}
}

// backoff waits before attempt n (0-based): exponential from BackoffMin to BackoffMax, with
// half of it random, so that a fleet coming back after an outage does not arrive in step.
func (a *Agent) backoff(ctx context.Context, n int) error {
	t := time.NewTimer(backoffDelay(a.cfg.BackoffMin, a.cfg.BackoffMax, n))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs until ctx ends: enrol if needed, then poll for bundles and send heartbeats. It
// never touches the configuration in force unless a verified, newer bundle arrives, so a
// device whose server is away keeps running on its last good configuration.
func (a *Agent) Run(ctx context.Context) error {
	key, err := LoadOrCreateKey(a.cfg.StateDir)
	if err != nil {
		return err
	}
	id, err := a.loadIdentity()
	if errors.Is(err, ErrNotEnroled) {
		id, err = a.enrolLoop(ctx, key)
	}
	if err != nil {
		return err
	}
	fleet, err := base64.StdEncoding.DecodeString(id.FleetKey)
	if err != nil || len(fleet) != ed25519.PublicKeySize {
		return fmt.Errorf("identity: fleet key is not a base64 Ed25519 key")
	}
	ap := &Applier{StateDir: a.cfg.StateDir, ConfigPath: a.cfg.ConfigPath, Device: id.DeviceID, FleetKey: fleet,
		Hooks: a.cfg.Hooks, ReadyTimeout: a.cfg.ReadyTimeout, Log: a.log}
	a.mu.Lock()
	a.identity, a.applier = id, ap
	a.mu.Unlock()
	if err := ap.Recover(ctx); err != nil {
		a.log.Error("recovering an interrupted apply", "err", err)
		a.setErr(err)
	}
	client, err := a.client(key, id)
	if err != nil {
		return err
	}
	defer client.Close()
	cur, _ := ap.Current()
	a.log.Info("device agent running", "device", id.DeviceID, "server", id.Server, "config_version", cur.Version)

	a.maybeRenew(ctx, client, key, id)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.heartbeats(ctx, client, ap, func() { a.maybeRenew(ctx, client, key, id) })
	}()
	a.pollLoop(ctx, client, ap)
	wg.Wait()
	return nil
}

func (a *Agent) pollLoop(ctx context.Context, client *Client, ap *Applier) {
	failures := 0
	for ctx.Err() == nil {
		data, err := client.Bundle(ctx, ap.Floor(), a.cfg.PollWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrRevoked) {
				if failures == 0 || failures%10 == 0 {
					a.log.Error("the server refuses this device's certificate (revoked); keeping the configuration in force", "attempt", failures+1)
				}
				a.setErr(err)
			} else if failures == 0 || failures%10 == 0 {
				a.log.Warn("cannot reach the provisioning server; keeping the configuration in force", "err", err, "attempt", failures+1)
			}
			a.backoff(ctx, failures)
			failures++
			continue
		}
		if failures > 0 {
			a.log.Info("provisioning server reachable again", "after_attempts", failures)
			failures = 0
			a.kickHeartbeat()
		}
		if data == nil {
			continue
		}
		v, err := ap.Apply(ctx, data)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("bundle not applied", "err", err)
			a.setErr(err)
			a.kickHeartbeat()
			if errors.Is(err, ErrRejected) {
				// The server sent something this device refuses; do not spin on it.
				a.backoff(ctx, 3)
			}
			continue
		}
		a.setErr(nil)
		a.log.Info("bundle applied", "version", v)
		a.kickHeartbeat()
	}
}

// backoffDelay is the wait before retry n: lo doubled n times, capped at hi, of which the
// second half is random.
func backoffDelay(lo, hi time.Duration, n int) time.Duration {
	d := lo << min(n, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

func (a *Agent) kickHeartbeat() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) heartbeats(ctx context.Context, client *Client, ap *Applier, renew func()) {
	t := time.NewTicker(a.cfg.HeartbeatEvery)
	defer t.Stop()
	for {
		hb := a.heartbeat(ctx, ap)
		if err := client.Heartbeat(ctx, hb); err != nil && ctx.Err() == nil {
			a.log.Debug("heartbeat failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			renew()
		case <-a.kick:
		}
	}
}

func (a *Agent) heartbeat(ctx context.Context, ap *Applier) api.Heartbeat {
	cur, _ := ap.Current()
	hb := api.Heartbeat{AgentVersion: a.cfg.AgentVersion, FirmwareVersion: a.cfg.FirmwareVersion, ConfigVersion: cur.Version,
		Health: "ok", UptimeSeconds: time.Since(a.start).Seconds()}
	if a.cfg.Status != nil {
		st := a.cfg.Status(ctx)
		hb.Health, hb.Camera, hb.Encoder = st.Health, st.Camera, st.Encoder
	}
	a.mu.Lock()
	hb.LastError = a.lastErr
	a.mu.Unlock()
	if hb.LastError == "" {
		hb.LastError = ap.LastError()
	}
	if hb.LastError != "" && hb.Health == "ok" {
		hb.Health = "degraded"
	}
	return hb
}

func (a *Agent) client(key any, id Identity) (*Client, error) {
	certPEM, err := os.ReadFile(filepath.Join(a.cfg.StateDir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(a.cfg.StateDir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, errors.New("device certificate is not PEM")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA certificate is not PEM")
	}
	return NewClient(id.Server, tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key}, pool), nil
}

func (a *Agent) loadIdentity() (Identity, error) {
	var id Identity
	data, err := os.ReadFile(filepath.Join(a.cfg.StateDir, IdentityFile))
	if errors.Is(err, os.ErrNotExist) {
		return id, ErrNotEnroled
	} else if err != nil {
		return id, fmt.Errorf("read identity: %w", err)
	}
	if err := json.Unmarshal(data, &id); err != nil {
		return id, fmt.Errorf("identity %s: %w", IdentityFile, err)
	}
	return id, nil
}

// enrolLoop reads the claim and enrols, retrying with backoff until it succeeds or ctx ends.
func (a *Agent) enrolLoop(ctx context.Context, key *ecdsa.PrivateKey) (Identity, error) {
	for n := 0; ; n++ {
		id, err := a.enrolOnce(ctx, key)
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return Identity{}, ctx.Err()
		}
		a.setErr(err)
		if n == 0 || n%10 == 0 {
			a.log.Warn("enrolment failed; retrying", "err", err, "attempt", n+1)
		}
		a.backoff(ctx, n)
	}
}

func (a *Agent) enrolOnce(ctx context.Context, key *ecdsa.PrivateKey) (Identity, error) {
	path := a.cfg.ClaimPath
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && a.cfg.ImageClaimPath != "" {
		path = a.cfg.ImageClaimPath
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrNoClaim, err)
	}
	c, err := claim.Parse(data)
	if err != nil {
		return Identity{}, fmt.Errorf("claim %s: %w", path, err)
	}
	resp, err := Enrol(ctx, c, key, a.cfg.Hardware)
	if err != nil {
		return Identity{}, err
	}
	if c.FleetKey != "" && c.FleetKey != resp.FleetKey {
		return Identity{}, errors.New("enrol: the server's fleet key differs from the one pinned in the claim")
	}
	if err := checkEnrolment(resp, c.CASHA256, key); err != nil {
		return Identity{}, fmt.Errorf("enrol: %w", err)
	}
	id := Identity{DeviceID: resp.DeviceID, Server: c.Server, FleetKey: resp.FleetKey, Status: resp.Status}
	if err := a.saveIdentity(id, resp); err != nil {
		return Identity{}, err
	}
	// The token has done its job: remove it from the claim (the rest stays, for diagnosis).
	c.Token = ""
	if out, err := c.Encode(); err == nil {
		if err := atomicfile.Write(path, out, 0o600); err != nil {
			a.log.Warn("could not remove the used claim token from the claim file", "path", path, "err", err)
		}
	}
	a.log.Info("enrolled", "device", id.DeviceID, "server", id.Server, "status", id.Status)
	return id, nil
}

// maybeRenew renews the device certificate when it expires within RenewBefore. The new
// certificate is checked like an enrolment answer, stored atomically and used at once; on
// failure the current one stays and the next heartbeat tries again.
func (a *Agent) maybeRenew(ctx context.Context, client *Client, key *ecdsa.PrivateKey, id Identity) {
	certPath := filepath.Join(a.cfg.StateDir, CertFile)
	data, err := os.ReadFile(certPath)
	if err != nil {
		return
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return
	}
	cur, err := x509.ParseCertificate(b.Bytes)
	if err != nil || time.Until(cur.NotAfter) > a.cfg.RenewBefore {
		return
	}
	csr, err := CSR(key, a.cfg.Hardware)
	if err != nil {
		return
	}
	certPEM, err := client.Renew(ctx, csr)
	if err == nil {
		caPEM, _ := os.ReadFile(filepath.Join(a.cfg.StateDir, CAFile))
		err = checkCertificate(certPEM, caPEM, key, id.DeviceID)
	}
	if err == nil {
		err = atomicfile.Write(certPath, certPEM, 0o644)
	}
	if err != nil {
		a.log.Warn("certificate renewal failed; keeping the current certificate", "not_after", cur.NotAfter, "err", err)
		return
	}
	nb, _ := pem.Decode(certPEM)
	client.SetCertificate(tls.Certificate{Certificate: [][]byte{nb.Bytes}, PrivateKey: key})
	a.log.Info("device certificate renewed", "previous_not_after", cur.NotAfter)
}

// checkEnrolment verifies what the server answered before it is stored: the CA is the one the
// claim pins, and the certificate is for this device's key, signed by that CA, for client
// authentication. Storing anything else would leave the device unable to talk to its server.
func checkEnrolment(resp api.EnrolResponse, pin string, key *ecdsa.PrivateKey) error {
	cb, _ := pem.Decode([]byte(resp.CA))
	if cb == nil {
		return errors.New("the answer holds no CA certificate")
	}
	if sum := sha256.Sum256(cb.Bytes); hex.EncodeToString(sum[:]) != pin {
		return errors.New("the answer's CA is not the one pinned in the claim")
	}
	return checkCertificate([]byte(resp.Certificate), []byte(resp.CA), key, resp.DeviceID)
}

// checkCertificate verifies that certPEM is a client certificate for key and device id,
// signed by the CA in caPEM.
func checkCertificate(certPEM, caPEM []byte, key *ecdsa.PrivateKey, id string) error {
	cb, _ := pem.Decode(caPEM)
	if cb == nil {
		return errors.New("no CA certificate")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return fmt.Errorf("CA certificate: %w", err)
	}
	db, _ := pem.Decode(certPEM)
	if db == nil {
		return errors.New("the answer holds no device certificate")
	}
	cert, err := x509.ParseCertificate(db.Bytes)
	if err != nil {
		return fmt.Errorf("device certificate: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return errors.New("the device certificate is not for this device's key")
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("device certificate: %w", err)
	}
	if cert.Subject.CommonName != id {
		return fmt.Errorf("device certificate names %q, the answer %q", cert.Subject.CommonName, id)
	}
	return nil
}

func (a *Agent) saveIdentity(id Identity, resp api.EnrolResponse) error {
	dir := a.cfg.StateDir
	if err := atomicfile.Write(filepath.Join(dir, CertFile), []byte(resp.Certificate), 0o644); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, CAFile), []byte(resp.CA), 0o644); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(id, "", "  ")
	return atomicfile.Write(filepath.Join(dir, IdentityFile), data, 0o600)
}
