package token

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "auth.secret")
	s1, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) < MinSecretLen {
		t.Fatalf("created a %d-byte secret", len(s1))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Fatalf("secret file mode %#o, want 0600", perm)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state directory: %v %v, want mode 0700", st.Mode(), err)
	}
	s2, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1, s2) {
		t.Fatal("second load returned another secret")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("left temporary files behind: %v", entries)
	}
	// The file's text is the key, so PyJWT, coturn and EDGED_AUTH_SECRET can use it as is.
	text, _ := os.ReadFile(path)
	if !bytes.Equal(bytes.TrimSpace(text), s1) {
		t.Fatalf("secret %q is not the file's text %q", s1, text)
	}
}

func TestLoadOrCreateSecretRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.secret")
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			s, err := LoadOrCreateSecret(path)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		})
	}
	wg.Wait()
	for _, s := range got[1:] {
		if !bytes.Equal(s, got[0]) {
			t.Fatal("concurrent creators disagree on the secret")
		}
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		path    string
		want    string
		wantErr error
	}{
		{"hand written", write("ok", "  this is a secret of 32 bytes!!!!\n", 0o600), "this is a secret of 32 bytes!!!!", nil},
		{"exactly 32 bytes", write("ok32", "0123456789abcdef0123456789abcdef", 0o400), "0123456789abcdef0123456789abcdef", nil},
		{"short", write("short", "hunter2\n", 0o600), "", ErrWeakSecret},
		{"group readable", write("open", "0123456789abcdef0123456789abcdef", 0o640), "", nil},
		{"missing", filepath.Join(dir, "nope"), "", os.ErrNotExist},
		{"directory", dir, "", nil},
		{"huge", write("huge", string(bytes.Repeat([]byte("a"), 5000)), 0o600), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ReadSecret(tc.path)
			if tc.want != "" {
				if err != nil || string(s) != tc.want {
					t.Fatalf("got %q, %v; want %q", s, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got secret %q, want an error", s)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestLoadOrCreateSecretRefusesOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.secret")
	if err := os.WriteFile(path, []byte("0123456789abcdef0123456789abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateSecret(path)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("chmod 600")) {
		t.Fatalf("got %v, want advice to chmod 600", err)
	}
}
