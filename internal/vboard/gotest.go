package vboard

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// GuestTag is the build tag of the tests that run inside the virtual board.
const GuestTag = "vboardguest"

// Package is a Go package of the module with in-guest tests.
type Package struct {
	ImportPath string
	Dir        string
	Rel        string // its path in the module, e.g. "device/camera": the step's name
	Cgo        bool   // its in-guest tests need cgo: built dynamically linked, shipped with their libraries
}

// ModuleRoot returns the directory of the main module's go.mod.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(mod), nil
}

// GuestPackages lists the module's packages (patterns, "./..." for all) that have test files
// built only with GuestTag: those `go list -tags vboardguest` counts and plain `go list`
// does not. A package whose in-guest test files are left out with CGO_ENABLED=0 is marked Cgo.
func GuestPackages(ctx context.Context, root string, patterns ...string) ([]Package, error) {
	with, err := testFiles(ctx, root, GuestTag, "1", patterns)
	if err != nil {
		return nil, err
	}
	without, err := testFiles(ctx, root, "", "1", patterns)
	if err != nil {
		return nil, err
	}
	static, err := testFiles(ctx, root, GuestTag, "0", patterns)
	if err != nil {
		return nil, err
	}
	var pkgs []Package
	for ip, p := range with {
		if !hasFilesBeyond(p.files, without[ip].files) {
			continue
		}
		p.Cgo = hasFilesBeyond(p.files, static[ip].files)
		pkgs = append(pkgs, p.Package)
	}
	slices.SortFunc(pkgs, func(a, b Package) int { return strings.Compare(a.Rel, b.Rel) })
	return pkgs, nil
}

// hasFilesBeyond reports whether files holds a file that others does not.
func hasFilesBeyond(files, others []string) bool {
	return slices.ContainsFunc(files, func(f string) bool { return !slices.Contains(others, f) })
}

type listed struct {
	Package
	files []string
}

// testFiles runs go list for linux, with cgo on or off ("1", "0"), and returns each package's
// test files.
func testFiles(ctx context.Context, root, tags, cgo string, patterns []string) (map[string]listed, error) {
	args := []string{"list", "-e", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .TestGoFiles \" \"}} {{join .XTestGoFiles \" \"}}"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, patterns...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED="+cgo)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	pkgs := map[string]listed{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 3)
		if len(f) != 3 {
			continue
		}
		rel, err := filepath.Rel(root, f[1])
		if err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		pkgs[f[0]] = listed{
			Package: Package{ImportPath: f[0], Dir: f[1], Rel: filepath.ToSlash(rel)},
			files:   strings.Fields(f[2]),
		}
	}
	return pkgs, nil
}

// BuildGuestTest compiles pkg's test binary for a guest of arch ("x86_64" or "arm64"),
// GOOS=linux, with GuestTag: static (CGO_ENABLED=0), or with cgo when pkg.Cgo (for arm64
// with Debian's aarch64-linux-gnu-gcc). The compiler's output is in the error.
func BuildGuestTest(ctx context.Context, root string, pkg Package, arch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-tags", GuestTag, "-o", out, pkg.ImportPath)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+GoArch(arch), "CGO_ENABLED=0")
	if pkg.Cgo {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=1")
		if arch == "arm64" {
			cmd.Env = append(cmd.Env, "CC=aarch64-linux-gnu-gcc", "CXX=aarch64-linux-gnu-g++")
		}
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the %s guest test of %s: %w\n%s", arch, pkg.Rel, err, b)
	}
	if _, err := os.Stat(out); err != nil {
		return fmt.Errorf("build the %s guest test of %s: go test -c wrote no binary: no test files for this build", arch, pkg.Rel)
	}
	return nil
}

// GoArch returns GOARCH for a guest architecture.
func GoArch(arch string) string {
	if arch == "x86_64" {
		return "amd64"
	}
	return arch
}

// LibDir is where Debian keeps the shared libraries of arch on an x86-64 host: its own, or
// those of the aarch64 cross toolchain.
func LibDir(arch string) string {
	if arch == "arm64" {
		return "/usr/aarch64-linux-gnu/lib"
	}
	return "/lib/x86_64-linux-gnu"
}

// AddGuestTest adds a package's test binary for arch as /tests/<rel>.test (with its shared
// libraries in /lib when it is dynamically linked) and its testdata directory, if it has one,
// as /pkg/<rel>/testdata, and returns the step that runs the tests matching run in
// /pkg/<rel> (where `go test` would run them: in the package's directory).
func AddGuestTest(a *Initramfs, pkg Package, arch, binary, run string) (Step, error) {
	guestBin := "/tests/" + pkg.Rel + ".test"
	if err := a.AddELF(guestBin, binary, LibDir(arch)); err != nil {
		return Step{}, err
	}
	dir := "/pkg/" + pkg.Rel
	a.Dir(dir)
	if td := filepath.Join(pkg.Dir, "testdata"); dirExists(td) {
		if err := a.CopyTree(dir+"/testdata", td); err != nil {
			return Step{}, err
		}
	}
	return GuestTest(pkg.Rel, guestBin, dir, run), nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
