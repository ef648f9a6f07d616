package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/config"
)

// A stand-in for edged, run as a real process: it loads its configuration file with edged's
// own loader (config.Load and Validate) and serves GET /healthz on http.listen; like edged, it
// exits with an error when it cannot listen.
const envFakeEdged = "EDGE_TEST_FAKE_EDGED"

func fakeEdged(path string) int {
	load := func() (config.Config, error) {
		cfg, err := config.Load(path, nil)
		if err == nil {
			err = cfg.Validate()
		}
		return cfg, err
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake edged:", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake edged:", err)
		return 1
	}
	var mu sync.Mutex
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "ok pid=%d bitrate=%d\n", os.Getpid(), cfg.Encoder.BitrateKbps)
	})}
	go srv.Serve(ln)
	// SIGHUP: the reload edged would need for live changes: re-read the file and take the
	// new settings without closing the listener or its connections.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	for {
		select {
		case <-hup:
			if next, err := load(); err == nil && LiveApplicable(cfg, next) {
				mu.Lock()
				cfg = next
				mu.Unlock()
			}
		case <-ctx.Done():
			srv.Close()
			return 0
		}
	}
}

// edgedProcess runs the stand-in under test control: Activate restarts it, Ready polls it.
type edgedProcess struct {
	t          testing.TB
	configPath string
	cmd        *exec.Cmd
	exited     chan struct{}
	activates  []bool // live flag of each activation
}

func (e *edgedProcess) stop() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		e.cmd.Process.Kill()
		<-e.exited
	}
	e.cmd = nil
}

func (e *edgedProcess) hooks() Hooks {
	return Hooks{
		Activate: func(ctx context.Context, live bool) error {
			e.activates = append(e.activates, live)
			if live && e.cmd != nil {
				return e.cmd.Process.Signal(syscall.SIGHUP) // reload: no restart, no dropped call
			}
			e.stop()
			e.cmd = newChild(e.t, envFakeEdged+"="+e.configPath)
			e.cmd.Stderr = nil
			if err := e.cmd.Start(); err != nil {
				return err
			}
			exited := make(chan struct{})
			cmd := e.cmd
			go func() { cmd.Wait(); close(exited) }()
			e.exited = exited
			return nil
		},
		Ready: func(ctx context.Context, cfg config.Config) error {
			for {
				select {
				case <-e.exited:
					return errors.New("edged exited")
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+cfg.HTTP.Listen+"/healthz", nil)
				resp, err := http.DefaultClient.Do(req)
				cancel()
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					// Ready means running with this configuration.
					if resp.StatusCode == 200 && strings.Contains(string(body), fmt.Sprintf("bitrate=%d\n", cfg.Encoder.BitrateKbps)) {
						return nil
					}
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-e.exited:
					return errors.New("edged exited")
				case <-time.After(20 * time.Millisecond):
				}
			}
		},
	}
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
