package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeflux/edge/internal/logging"
	"github.com/edgeflux/edge/provisioning/atomicfile"
	"github.com/edgeflux/edge/provisioning/server"
	"github.com/edgeflux/edge/provisioning/store"
)

var version = "dev"

func env(environ []string, key string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// run starts provisiond; ready, when not nil, receives the listening address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string, ready chan<- string) error {
	fs := flag.NewFlagSet("provisiond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "/var/lib/provisiond", "state directory: CA, signing key, operator tokens, SQLite database")
	dsn := fs.String("db", env(environ, "PROVISIOND_DB"), "registry: sqlite:PATH or postgres://… (default sqlite:STATE/fleet.db); env PROVISIOND_DB")
	keyPath := fs.String("signing-key", "", "Ed25519 bundle-signing key, PKCS#8 PEM (default STATE/signing.key, made on first start); env PROVISIOND_SIGNING_KEY holds a base64 seed instead")
	listen := fs.String("listen", ":8443", "HTTPS listen address")
	publicURL := fs.String("url", "", "https://host:port at which devices reach this server (written into claim files)")
	hosts := fs.String("hosts", "", "comma-separated names and addresses for the server certificate (default: the -url host, localhost, 127.0.0.1)")
	operators := fs.String("operators", "", "operator token file: NAME SHA256 per line (default STATE/operators; made with an admin token on first start)")
	addOperator := fs.String("add-operator", "", "create a token for this operator name, print it, and exit")
	enrolRate := fs.Float64("enrol-rate", 5, "enrolment attempts per second per client address")
	enrolBurst := fs.Int("enrol-burst", 100, "enrolment attempts a client address may make at once")
	online := fs.Duration("online-within", 90*time.Second, "a device seen within this long is listed online")
	metricsListen := fs.String("metrics-listen", "", "plain-HTTP listen address for Prometheus metrics (GET /metrics), e.g. 127.0.0.1:9464; empty: off")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "provisiond", version)
		return nil
	}
	log, err := logging.New(stderr, *level, "auto", environ)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if *operators == "" {
		*operators = filepath.Join(*state, "operators")
	}
	if *addOperator != "" {
		tok, err := server.AddOperator(*operators, *addOperator)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	}
	if _, err := os.Stat(*operators); errors.Is(err, os.ErrNotExist) {
		tok, err := server.AddOperator(*operators, "admin")
		if err != nil {
			return err
		}
		tokPath := filepath.Join(*state, "admin.token")
		if err := atomicfile.Write(tokPath, []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
		log.Info("created the first operator token (name admin); edgectl reads it with -token-file", "path", tokPath)
	}
	ops, err := server.LoadOperators(*operators)
	if err != nil {
		return err
	}
	var signing ed25519.PrivateKey
	if seed := env(environ, "PROVISIOND_SIGNING_KEY"); seed != "" {
		if signing, err = server.ParseSigningKey([]byte(seed)); err != nil {
			return fmt.Errorf("PROVISIOND_SIGNING_KEY: %w", err)
		}
	} else {
		p := *keyPath
		if p == "" {
			p = filepath.Join(*state, "signing.key")
		}
		if signing, err = server.LoadOrCreateSigningKey(p, *keyPath == ""); err != nil {
			return err
		}
	}
	ca, err := server.LoadOrCreateCA(*state, "edgeflux provisioning CA")
	if err != nil {
		return err
	}
	if *dsn == "" {
		*dsn = "sqlite:" + filepath.Join(*state, "fleet.db")
	}
	db, err := store.Open(ctx, *dsn)
	if err != nil {
		return err // the DSN is not repeated: it may hold a password
	}
	defer db.Close()
	if *publicURL == "" {
		_, port, _ := net.SplitHostPort(*listen)
		*publicURL = "https://localhost:" + port
	}
	u, err := url.Parse(*publicURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("-url %q: use https://host:port", *publicURL)
	}
	names := []string{u.Hostname(), "localhost", "127.0.0.1", "::1"}
	if *hosts != "" {
		names = strings.Split(*hosts, ",")
	}
	srv, err := server.New(server.Config{Store: db, CA: ca, SigningKey: signing, Operators: ops, Logger: log, URL: *publicURL,
		EnrolRate: *enrolRate, EnrolBurst: *enrolBurst, OnlineWithin: *online})
	if err != nil {
		return err
	}
	tlsCfg, err := srv.TLSConfig(names)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	log.Info("provisiond serving", "version", version, "listen", ln.Addr().String(), "url", *publicURL, "registry", db.Dialect(),
		"ca_sha256", ca.Fingerprint(), "fleet_key_id", fleetKeyID(signing), "operators", len(ops))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 2)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	var ms *http.Server
	if *metricsListen != "" {
		mln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			ln.Close()
			<-errc
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		ms = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go ms.Serve(mln)
		log.Info("metrics served", "listen", mln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	if ms != nil {
		ms.Shutdown(sctx)
	}
	<-errc
	return nil
}
