package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.yaml")
	for _, content := range []string{"one\n", "two, longer\n", ""} {
		if err := Write(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if string(got) != content || fi.Mode().Perm() != 0o640 {
			t.Fatalf("content %q mode %v", got, fi.Mode().Perm())
		}
	}
	os.WriteFile(filepath.Join(dir, ".f.yaml.tmp-123"), []byte("left by a killed writer"), 0o600)
	CleanTemps(dir, "f.yaml")
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want 1", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if err := Remove(p); err != nil || Remove(p) != nil {
		t.Fatalf("remove: %v", err)
	}
}
