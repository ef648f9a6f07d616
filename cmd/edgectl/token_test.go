package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/token"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func TestCmdToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auth.secret")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		env     string // EDGED_AUTH_SECRET; "-" unset
		args    []string
		want    token.Claims // checked when wantErr is ""
		ttl     time.Duration
		wantErr string
	}{
		{"publish and subscribe from env", testSecret, []string{"-room", "lobby", "-identity", "alice", "-name", "Alice", "-publish", "-subscribe"},
			token.Claims{Identity: "alice", Name: "Alice", Room: "lobby", Grants: token.Grants{Publish: true, Subscribe: true}}, time.Hour, ""},
		{"secret file wins over env", "a different secret that is long enough", []string{"-secret-file", file, "-room", "lobby", "-identity", "bob", "-subscribe", "-ttl", "10m"},
			token.Claims{Identity: "bob", Room: "lobby", Grants: token.Grants{Subscribe: true}}, 10 * time.Minute, ""},
		{"admin any room", testSecret, []string{"-room", "*", "-identity", "ops", "-admin", "-ttl", "24h"},
			token.Claims{Identity: "ops", Room: "*", Grants: token.Grants{Admin: true}}, 24 * time.Hour, ""},
		{"no secret", "-", []string{"-room", "lobby", "-identity", "alice", "-publish"}, token.Claims{}, 0, "give -secret-file"},
		{"short env secret", "hunter2", []string{"-room", "lobby", "-identity", "alice", "-publish"}, token.Claims{}, 0, "EDGED_AUTH_SECRET: token: secret too short"},
		{"missing secret file", "-", []string{"-secret-file", file + ".nope", "-room", "lobby", "-identity", "alice", "-publish"}, token.Claims{}, 0, "no such file"},
		{"no room", testSecret, []string{"-identity", "alice", "-publish"}, token.Claims{}, 0, "-room is required"},
		{"no identity", testSecret, []string{"-room", "lobby", "-publish"}, token.Claims{}, 0, "-identity is required"},
		{"no grants", testSecret, []string{"-room", "lobby", "-identity", "alice"}, token.Claims{}, 0, "grants nothing"},
		{"any room without admin", testSecret, []string{"-room", "*", "-identity", "alice", "-publish"}, token.Claims{}, 0, "only allowed with -admin"},
		{"ttl too long", testSecret, []string{"-room", "lobby", "-identity", "alice", "-publish", "-ttl", "25h"}, token.Claims{}, 0, "at most 24h0m0s"},
		{"ttl negative", testSecret, []string{"-room", "lobby", "-identity", "alice", "-publish", "-ttl", "-1m"}, token.Claims{}, 0, "must be more than 0"},
		{"stray argument", testSecret, []string{"-room", "lobby", "-identity", "alice", "-publish", "extra"}, token.Claims{}, 0, `unexpected argument "extra"`},
		{"unknown flag", testSecret, []string{"-rooom", "lobby"}, token.Claims{}, 0, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env == "-" {
				t.Setenv(secretEnv, "")
				os.Unsetenv(secretEnv)
			} else {
				t.Setenv(secretEnv, tc.env)
			}
			var stdout, stderr bytes.Buffer
			before := time.Now().Truncate(time.Second)
			err := cmdToken(tc.args, &stdout, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				if stdout.Len() != 0 {
					t.Fatalf("printed %q on error", stdout.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out := stdout.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("stdout %q is not one line", out)
			}
			c, err := token.Verify([]byte(testSecret), strings.TrimSpace(out), time.Now())
			if err != nil {
				t.Fatalf("printed token does not verify: %v", err)
			}
			if c.Identity != tc.want.Identity || c.Name != tc.want.Name || c.Room != tc.want.Room || c.Grants != tc.want.Grants {
				t.Fatalf("claims %+v, want %+v", c, tc.want)
			}
			if got := c.ExpiresAt.Sub(c.IssuedAt); got != tc.ttl {
				t.Fatalf("lifetime %s, want %s", got, tc.ttl)
			}
			if c.IssuedAt.Before(before) || c.IssuedAt.After(time.Now()) {
				t.Fatalf("iat %s is not now", c.IssuedAt)
			}
		})
	}
}

func TestCmdTokenHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := cmdToken([]string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "usage: edgectl token") || !strings.Contains(stderr.String(), "EDGED_AUTH_SECRET") {
		t.Fatalf("usage text: %s", stderr.String())
	}
}
