package vboard

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// CacheDir is where the virtual board keeps what it builds or downloads, outside the
// checkout: $EDGE_VBOARD_CACHE, else $XDG_CACHE_HOME/edged-vboard, else
// $HOME/.cache/edged-vboard (the same rule as kernel/build.sh).
func CacheDir() (string, error) {
	if d := os.Getenv("EDGE_VBOARD_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("vboard cache: %w", err)
	}
	return filepath.Join(d, "edged-vboard"), nil
}

// BuildKernel runs the test kernel's build script (kernel/build.sh in this package), which
// builds the x86-64 kernel or finds it in the cache, and returns the bzImage's path. The
// script's progress goes to progress.
func BuildKernel(ctx context.Context, script string, progress io.Writer) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout = &out
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build test kernel (%s): %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	kernel := lines[len(lines)-1]
	if !fileExists(kernel) {
		return "", fmt.Errorf("build test kernel (%s): it printed %q, not a kernel image", script, kernel)
	}
	return kernel, nil
}

// DebianKernel returns the vmlinuz of Debian's current kernel for arch (the package that
// linux-image-<arch> depends on), downloaded but not installed, and cached in
// cache/deb/<package>_<version>_<arch>/. apt must know arch's packages: for a foreign
// architecture, dpkg --add-architecture arch and apt-get update (.ci/install-deps test does).
func DebianKernel(ctx context.Context, cache, arch string) (string, error) {
	meta := "linux-image-" + arch
	fields, err := aptShow(ctx, meta, arch)
	if err != nil {
		return "", err
	}
	pkg := ""
	for _, dep := range strings.Split(fields["Depends"], ",") {
		name := strings.Fields(dep + " ")[0]
		if strings.HasPrefix(name, "linux-image-") {
			pkg = name
			break
		}
	}
	if pkg == "" {
		return "", fmt.Errorf("debian kernel: %s:%s depends on no linux-image package (Depends: %s)", meta, arch, fields["Depends"])
	}
	return DebianFile(ctx, cache, pkg, arch, "./boot/vmlinuz-*")
}

// DebianFile returns one file of a Debian package, the first whose path in the package
// matches the pattern member (path.Match, e.g. "./bin/busybox"). The package is fetched with
// apt-get download, never installed, and the file is cached in
// cache/deb/<package>_<version>_<arch>/ so later calls need no network.
func DebianFile(ctx context.Context, cache, pkg, arch, member string) (string, error) {
	fields, err := aptShow(ctx, pkg, arch)
	if err != nil {
		return "", err
	}
	version := fields["Version"]
	dir := filepath.Join(cache, "deb", strings.NewReplacer(":", "%3a", "/", "_").Replace(pkg+"_"+version+"_"+arch))
	if matches, _ := filepath.Glob(filepath.Join(dir, path.Base(member))); len(matches) > 0 {
		return matches[0], nil
	}

	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("debian %s: %w", pkg, err)
	}
	tmp, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return "", fmt.Errorf("debian %s: %w", pkg, err)
	}
	defer os.RemoveAll(tmp)
	download := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+":"+arch+"="+version)
	download.Dir = tmp
	if out, err := download.CombinedOutput(); err != nil {
		return "", fmt.Errorf("debian %s: apt-get download: %w\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("debian %s: apt-get download left %d .deb files", pkg, len(debs))
	}
	extracted := filepath.Join(tmp, "out")
	if err := os.Mkdir(extracted, 0o755); err != nil {
		return "", fmt.Errorf("debian %s: %w", pkg, err)
	}
	name, err := extractDebMember(ctx, debs[0], member, extracted)
	if err != nil {
		return "", fmt.Errorf("debian %s: %w", pkg, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("debian %s: %w", pkg, err)
	}
	if err := os.Rename(extracted, dir); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("debian %s: %w", pkg, err)
	}
	return filepath.Join(dir, name), nil
}

// extractDebMember writes the first file of the .deb whose path matches member into dir and
// returns its base name.
func extractDebMember(ctx context.Context, deb, member, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("dpkg-deb: %w", err)
	}
	defer cmd.Wait()
	defer io.Copy(io.Discard, stdout) // let dpkg-deb finish writing
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", fmt.Errorf("%s has no file matching %s", filepath.Base(deb), member)
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w (%s)", filepath.Base(deb), err, strings.TrimSpace(stderr.String()))
		}
		if ok, _ := path.Match(member, h.Name); !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Base(h.Name)
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("extract %s: %w", h.Name, err)
		}
		return name, nil
	}
}

// aptShow returns the fields of the candidate version of pkg:arch in apt's lists.
func aptShow(ctx context.Context, pkg, arch string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg+":"+arch).Output()
	if err == nil && len(out) == 0 {
		err = errors.New("no such package")
	}
	if err != nil {
		hint := ""
		if arch != "amd64" {
			hint = fmt.Sprintf(" (for a foreign architecture apt needs dpkg --add-architecture %s && apt-get update; .ci/install-deps test does it)", arch)
		}
		return nil, fmt.Errorf("apt-cache show %s:%s: %w%s", pkg, arch, err, hint)
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok || strings.HasPrefix(k, " ") {
			continue
		}
		if _, seen := fields[k]; !seen {
			fields[k] = v
		}
	}
	if fields["Version"] == "" {
		return nil, fmt.Errorf("apt-cache show %s:%s: no version", pkg, arch)
	}
	return fields, nil
}
