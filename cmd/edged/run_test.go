package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigProblemsStopEdgedWithTheFieldNamed(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     []string
		args    []string
		wantErr []string
	}{
		{name: "unknown key", yaml: "http:\n  listen: \":8080\"\n  listn: x\n", wantErr: []string{`unknown key "listn"`, "edged.yaml:3"}},
		{name: "odd width", yaml: "camera:\n  width: 1281\n", wantErr: []string{"camera.width", "1281"}},
		{name: "bitrate out of range", yaml: "encoder:\n  bitrate_kbps: 5\n", wantErr: []string{"encoder.bitrate_kbps"}},
		{name: "short secret", yaml: "auth:\n  secret: abc\n", wantErr: []string{"auth.secret"}},
		{name: "bad env", env: []string{"EDGED_CAMERA_FPS=fast"}, wantErr: []string{"EDGED_CAMERA_FPS"}},
		{name: "unknown env", env: []string{"EDGED_CAMERA_FSP=30"}, wantErr: []string{"EDGED_CAMERA_FSP"}},
		{name: "bad flag value", args: []string{"-listen", "nonsense"}, wantErr: []string{"http.listen"}},
		{name: "missing file", args: []string{"-config", "/nonexistent/edged.yaml"}, wantErr: []string{"/nonexistent/edged.yaml"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				path := filepath.Join(t.TempDir(), "edged.yaml")
				if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"-config", path}, args...)
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), args, &out, &errOut, tc.env, nil)
			if err == nil {
				t.Fatal("edged accepted the configuration")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestCheckConfigAcceptsTheReferenceConfig(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-check-config", "-config", "edged.yaml"}, &out, &out, nil, nil)
	if err != nil || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("--check-config on the reference config: %v, output %q", err, out.String())
	}
}

func TestFlowing(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		last time.Time
		fps  int
		ok   bool
	}{
		{"nothing yet", time.Time{}, 30, false},
		{"fresh frame", now.Add(-30 * time.Millisecond), 30, true},
		{"1.5 s old at 30 fps", now.Add(-1500 * time.Millisecond), 30, true},
		{"3 s old at 30 fps", now.Add(-3 * time.Second), 30, false},
		{"3 s old at 1 fps", now.Add(-3 * time.Second), 1, true},
		{"11 s old at 1 fps", now.Add(-11 * time.Second), 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ok, why := flowing(tc.last, tc.fps); ok != tc.ok {
				t.Errorf("flowing = %v (%s); want %v", ok, why, tc.ok)
			}
		})
	}
}

func TestFactoryResetWipesStateDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"device.key", "config/applied.yaml"} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	if err := factoryReset([]string{"STATE_DIRECTORY=" + dir}, log); !errors.Is(err, errFactoryReset) {
		t.Fatalf("factoryReset: %v; want errFactoryReset so that edged exits non-zero and systemd restarts it", err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("state directory after reset: %v entries, err %v; want empty and still there", len(entries), err)
	}
	if err := factoryReset(nil, log); !errors.Is(err, errFactoryReset) {
		t.Errorf("without STATE_DIRECTORY: %v", err)
	}
}
