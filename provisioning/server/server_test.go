package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeflux/edge/provisioning/claim"
	"github.com/edgeflux/edge/provisioning/store"
)

func TestAuth(t *testing.T) {
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "f.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ca, _ := LoadOrCreateCA(t.TempDir(), "t")
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, err := New(Config{Store: db, CA: ca, SigningKey: key, Operators: map[string]string{claim.HashToken("eop_good"): "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, auth string
		code               int
		msg                string
	}{
		{"GET", "/v1/admin/devices", "", 401, "operator bearer token is required"},
		{"GET", "/v1/admin/devices", "Bearer eop_bad", 401, "operator bearer token is required"},
		{"GET", "/v1/admin/devices", "Bearer eop_good", 200, "[]"},
		{"GET", "/v1/device/bundle", "", 401, "client certificate is required"},
		{"POST", "/v1/device/heartbeat", "Bearer eop_good", 401, "client certificate is required"},
		{"POST", "/v1/enrol", "", 400, "bad request"},
		{"GET", "/v1/admin/devices/dev-x", "Bearer eop_good", 404, `device \"dev-x\" not found`},
		{"PUT", "/v1/admin/groups/Bad!", "Bearer eop_good", 400, "group"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}"))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.msg) {
			t.Errorf("%s %s (%s): %d %s, want %d %q", tc.method, tc.path, tc.auth, rec.Code, rec.Body, tc.code, tc.msg)
		}
	}
}
