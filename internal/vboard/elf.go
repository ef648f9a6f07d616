package vboard

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
)

// AddELF adds the host executable src as name. A dynamically linked one brings its program
// interpreter (at the path the binary names) and, recursively, the shared libraries it needs,
// taken from libDir (for arm64 binaries cross-built on Debian: /usr/aarch64-linux-gnu/lib)
// and put in the guest's /lib (InitScript sets LD_LIBRARY_PATH=/lib). With libDir empty,
// only static executables are accepted.
func (a *Initramfs) AddELF(name, src, libDir string) error {
	interp, needed, err := elfDeps(src)
	if err != nil {
		return fmt.Errorf("initramfs: add %s: %w", name, err)
	}
	if interp != "" && libDir == "" {
		return fmt.Errorf("initramfs: add %s: %s is dynamically linked (needs %s); a static build is expected", name, src, interp)
	}
	if err := a.CopyFile(name, src, 0o755); err != nil {
		return err
	}
	if interp == "" {
		return nil
	}
	if err := a.copyResolved(interp, filepath.Join(libDir, path.Base(interp))); err != nil {
		return fmt.Errorf("initramfs: add %s: interpreter: %w", name, err)
	}
	for len(needed) > 0 {
		lib := needed[0]
		needed = needed[1:]
		guest := "/lib/" + lib
		if a.Has(guest) {
			continue
		}
		host := filepath.Join(libDir, lib)
		if err := a.copyResolved(guest, host); err != nil {
			return fmt.Errorf("initramfs: add %s: library: %w", name, err)
		}
		_, more, err := elfDeps(host)
		if err != nil {
			return fmt.Errorf("initramfs: add %s: %w", name, err)
		}
		needed = append(needed, more...)
	}
	return nil
}

// copyResolved adds the file a host symlink chain ends at, under the name asked for.
func (a *Initramfs) copyResolved(name, host string) error {
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		return err
	}
	return a.CopyFile(name, real, 0o755)
}

// elfDeps returns an ELF file's program interpreter ("" for a static executable) and the
// shared libraries it names (DT_NEEDED).
func elfDeps(file string) (interp string, needed []string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, fmt.Errorf("%s: read interpreter: %w", file, err)
			}
			interp = string(b[:len(b)-1]) // NUL-terminated
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", file, err)
	}
	return interp, needed, nil
}

// ELFMachine returns the architecture of an ELF file in Guest.Arch's words ("x86_64",
// "arm64"), or its ELF machine name for others.
func ELFMachine(file string) (string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "x86_64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return f.Machine.String(), nil
}

// fileExists reports whether a regular file exists at p.
func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
