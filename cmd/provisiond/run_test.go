package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/leakcheck"
	"github.com/edgeflux/edge/provisioning/api"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun starts provisiond on a fresh state directory: it makes its CA, signing key and first
// operator token, serves HTTPS on loopback, answers an operator, logs no secret, and comes
// back with the same keys after a restart.
func TestRun(t *testing.T) {
	leakcheck.Check(t)
	state := t.TempDir()
	start := func() (string, *syncBuf, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		logs := &syncBuf{}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"-state", state, "-listen", "127.0.0.1:0", "-url", "https://127.0.0.1:8443"}, logs, logs, nil, ready)
		}()
		select {
		case addr := <-ready:
			return addr, logs, func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}
		case err := <-done:
			t.Fatalf("run: %v\n%s", err, logs)
		case <-time.After(20 * time.Second):
			t.Fatal("provisiond did not start")
		}
		return "", nil, nil
	}
	addr, logs, stop := start()
	for _, f := range []string{"ca.crt", "ca.key", "signing.key", "operators", "admin.token", "fleet.db"} {
		fi, err := os.Stat(filepath.Join(state, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if strings.HasSuffix(f, ".key") || f == "admin.token" {
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
	}
	token, _ := os.ReadFile(filepath.Join(state, "admin.token"))
	caPEM, _ := os.ReadFile(filepath.Join(state, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	body, _ := json.Marshal(api.ClaimCreate{Group: "lab", MaxUses: 2, ExpiresIn: "1h"})
	req, _ := http.NewRequest("POST", "https://"+addr+"/v1/admin/claims", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ct api.ClaimToken
	json.NewDecoder(resp.Body).Decode(&ct)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.HasPrefix(ct.Token, "ect_") || !strings.Contains(ct.Claim, `"ca_sha256"`) {
		t.Fatalf("claim create: %d %+v", resp.StatusCode, ct)
	}
	hc.CloseIdleConnections()
	stop()
	signing, _ := os.ReadFile(filepath.Join(state, "signing.key"))
	caKey, _ := os.ReadFile(filepath.Join(state, "ca.key"))
	for name, secret := range map[string]string{"operator token": strings.TrimSpace(string(token)), "claim token": ct.Token,
		"signing key": strings.Split(string(signing), "\n")[1], "CA key": strings.Split(string(caKey), "\n")[1]} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the %s appears in provisiond's log", name)
		}
	}
	if !strings.Contains(logs.String(), "created the first operator token") || !strings.Contains(logs.String(), "ca_sha256=") {
		t.Errorf("log:\n%s", logs)
	}

	// A restart keeps the CA and the keys, and makes no second admin token.
	_, logs2, stop2 := start()
	stop2()
	again, _ := os.ReadFile(filepath.Join(state, "signing.key"))
	if !bytes.Equal(again, signing) || strings.Contains(logs2.String(), "created the first operator token") {
		t.Fatalf("restart changed the keys or the operators:\n%s", logs2)
	}
}

func TestAddOperator(t *testing.T) {
	state := t.TempDir()
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-state", state, "-add-operator", "bob"}, &out, &errb, nil, nil); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	ops, _ := os.ReadFile(filepath.Join(state, "operators"))
	if !strings.HasPrefix(tok, "eop_") || !strings.HasPrefix(string(ops), "bob ") || strings.Contains(string(ops), tok) {
		t.Fatalf("token %q, operators file %q", tok, ops)
	}
}
