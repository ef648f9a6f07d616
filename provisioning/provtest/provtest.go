// Package provtest runs a real provisioning server on loopback for tests: a registry, the CA,
// a signing key, an operator token and an HTTPS listener on 127.0.0.1.
package provtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
	"github.com/edgeflux/edge/provisioning/claim"
	"github.com/edgeflux/edge/provisioning/server"
	"github.com/edgeflux/edge/provisioning/store"
)

// Env is a running provisioning server.
type Env struct {
	Dir        string // holds ca.crt and admin.token
	URL        string // https://127.0.0.1:PORT
	CAFile     string
	TokenFile  string // the operator token, for edgectl -token-file
	Token      string
	Server     *server.Server
	Store      *store.DB
	CA         *server.CA
	SigningKey ed25519.PrivateKey
	Logs       *SyncBuffer // everything the server logged (JSON lines)
	Addr       string

	mu   sync.Mutex
	hs   *http.Server
	cfg  server.Config
	tls  []string
	done chan struct{}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Options change the server's configuration.
type Options struct {
	EnrolRate    float64
	EnrolBurst   int
	Now          func() time.Time
	CertValidity time.Duration
	Logs         *SyncBuffer // where the server logs (default: a new buffer)
}

// Start opens the registry at dsn and serves it until the test ends.
func Start(t testing.TB, dsn string, opt Options) *Env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open registry: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	ca, err := server.LoadOrCreateCA(dir, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tokenFile := filepath.Join(dir, "operators")
	token, err := server.AddOperator(tokenFile, "alice")
	if err != nil {
		t.Fatal(err)
	}
	ops, err := server.LoadOperators(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(dir, "admin.token")
	os.WriteFile(tf, []byte(token+"\n"), 0o600)
	logs := opt.Logs
	if logs == nil {
		logs = &SyncBuffer{}
	}
	e := &Env{Dir: dir, CAFile: filepath.Join(dir, "ca.crt"), TokenFile: tf, Token: token, Store: db, CA: ca, SigningKey: key, Logs: logs}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Addr = ln.Addr().String()
	e.URL = "https://" + e.Addr
	e.cfg = server.Config{Store: db, CA: ca, SigningKey: key, Operators: ops, URL: e.URL,
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		EnrolRate: opt.EnrolRate, EnrolBurst: opt.EnrolBurst, Now: opt.Now, MaxWait: 20 * time.Second, CertValidity: opt.CertValidity}
	e.Server, err = server.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.tls = []string{"127.0.0.1", "localhost"}
	e.serve(t, ln)
	t.Cleanup(e.Stop)
	return e
}

func (e *Env) serve(t testing.TB, ln net.Listener) {
	tlsCfg, err := e.Server.TLSConfig(e.tls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hs := &http.Server{Handler: e.Server.Handler(), TLSConfig: tlsCfg, ErrorLog: nil,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	hs.RegisterOnShutdown(cancel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	e.mu.Lock()
	e.hs, e.done = hs, done
	e.mu.Unlock()
}

// Stop stops the listener (the registry stays); Restart brings it back on the same address.
func (e *Env) Stop() {
	e.mu.Lock()
	hs, done := e.hs, e.done
	e.hs = nil
	e.mu.Unlock()
	if hs == nil {
		return
	}
	hs.Close()
	<-done
}

// Restart serves again on the same address, with a new Server over the same registry and keys.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", e.Addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen again on %s: %v", e.Addr, err)
	}
	if e.Server, err = server.New(e.cfg); err != nil {
		t.Fatal(err)
	}
	e.serve(t, ln)
}

// ResignWith makes the server sign bundles with key from now on (a rotated or stolen server
// key, from the devices' point of view).
func (e *Env) ResignWith(t testing.TB, key ed25519.PrivateKey) {
	t.Helper()
	e.Stop()
	e.cfg.SigningKey = key
	e.Restart(t)
}

// Claim creates a claim token through the store and returns the claim file for it.
func (e *Env) Claim(t testing.TB, group string, uses int, ttl time.Duration, approval bool) (claim.Claim, api.ClaimToken) {
	t.Helper()
	tok, err := claim.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	c := api.ClaimToken{ID: store.NewID("clm_"), Group: group, MaxUses: uses, ExpiresAt: now.Add(ttl), RequireApproval: approval, CreatedBy: "test", CreatedAt: now}
	if err := e.Store.CreateClaim(context.Background(), c, claim.HashToken(tok)); err != nil {
		t.Fatal(err)
	}
	return claim.Claim{Server: e.URL, CASHA256: e.CA.Fingerprint(), Token: tok}, c
}

// WriteClaim writes a claim file to path.
func WriteClaim(t testing.TB, path string, c claim.Claim) {
	t.Helper()
	data, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// PutGroup stores a group template and pushes it, as an operator would.
func (e *Env) PutGroup(t testing.TB, name, config string) {
	t.Helper()
	if err := e.Store.PutGroup(context.Background(), name, config, "test"); err != nil {
		t.Fatal(err)
	}
}
