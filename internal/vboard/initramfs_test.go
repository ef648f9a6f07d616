package vboard

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

type cpioEntry struct {
	name   string
	mode   uint32
	data   string
	rmajor uint32
	rminor uint32
}

// readNewc parses a gzip-compressed newc archive the way the kernel does, checking the
// 4-byte alignment of every header and data block.
func readNewc(t *testing.T, archive []byte) []cpioEntry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	field := func(h []byte, i int) uint32 {
		v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header field %d: %v", i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	var out []cpioEntry
	for off := 0; ; {
		if off%4 != 0 {
			t.Fatalf("header at unaligned offset %d", off)
		}
		h := raw[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		namesize, size := int(field(h, 11)), int(field(h, 6))
		name := string(raw[off+110 : off+110+namesize-1])
		if raw[off+110+namesize-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		off = align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			if rest := raw[off:]; len(bytes.Trim(rest, "\x00")) != 0 {
				t.Fatalf("%d bytes after the trailer", len(rest))
			}
			return out
		}
		out = append(out, cpioEntry{name: name, mode: field(h, 1), data: string(raw[off : off+size]), rmajor: field(h, 9), rminor: field(h, 10)})
		off = align(off + size)
	}
}

func TestInitramfsWritesNewc(t *testing.T) {
	host := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(host, []byte("hello from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := NewInitramfs()
	a.File("/init", 0o755, []byte("#!/bin/sh\n"))
	a.Symlink("bin/sh", "busybox")
	a.CharDev("dev/console", 0o600, 5, 1)
	if err := a.CopyFile("tests/device/camera.test", host, 0o755); err != nil {
		t.Fatal(err)
	}
	a.Dir("tmp/")
	var buf bytes.Buffer
	if err := a.Write(&buf); err != nil {
		t.Fatal(err)
	}
	want := []cpioEntry{
		{name: "bin", mode: modeDir | 0o755},
		{name: "bin/sh", mode: modeSymlink | 0o777, data: "busybox"},
		{name: "dev", mode: modeDir | 0o755},
		{name: "dev/console", mode: modeCharDev | 0o600, rmajor: 5, rminor: 1},
		{name: "init", mode: modeRegular | 0o755, data: "#!/bin/sh\n"},
		{name: "tests", mode: modeDir | 0o755},
		{name: "tests/device", mode: modeDir | 0o755},
		{name: "tests/device/camera.test", mode: modeRegular | 0o755, data: "hello from the host"},
		{name: "tmp", mode: modeDir | 0o755},
	}
	got := readNewc(t, buf.Bytes())
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestInitramfsCopyFileFailsOnMissingFile(t *testing.T) {
	a := NewInitramfs()
	if err := a.CopyFile("x", filepath.Join(t.TempDir(), "missing"), 0o644); err == nil {
		t.Fatal("no error for a missing host file")
	}
}

func TestAddELFRejectsDynamicWithoutLibDir(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	interp, _, err := elfDeps(self)
	if err != nil {
		t.Fatal(err)
	}
	err = NewInitramfs().AddELF("bin/x", self, "")
	if interp != "" && err == nil {
		t.Fatal("a dynamically linked test binary was accepted without a library directory")
	}
	if interp == "" && err != nil {
		t.Fatalf("a static test binary was refused: %v", err)
	}
}
