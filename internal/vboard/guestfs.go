package vboard

import "fmt"

// BaseInitramfs returns a root filesystem with what /init needs: the mount points, the
// /dev/console node the kernel opens for /init, and busybox (a static executable for arch,
// as Debian's busybox-static ships in /bin/busybox) as /bin/busybox and /bin/sh. /init
// installs the other applet links itself (busybox --install -s). Add the test binaries and
// /init (InitScript) to it.
func BaseInitramfs(busybox, arch string) (*Initramfs, error) {
	machine, err := ELFMachine(busybox)
	if err != nil {
		return nil, fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	if machine != arch {
		return nil, fmt.Errorf("busybox: %s is built for %s, not %s", busybox, machine, arch)
	}
	a := NewInitramfs()
	for _, dir := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "lib", "proc", "sys", "dev", "tmp", "root", "etc"} {
		a.Dir(dir)
	}
	a.CharDev("dev/console", 0o600, 5, 1)
	if err := a.AddELF("bin/busybox", busybox, ""); err != nil {
		return nil, fmt.Errorf("busybox: %w (Debian's busybox-static is; the busybox package is not)", err)
	}
	a.Symlink("bin/sh", "busybox")
	return a, nil
}
