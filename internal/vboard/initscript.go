package vboard

import (
	"fmt"
	"strings"
)

// Step is one command /init runs, bracketed on the console by MarkerBegin and MarkerEnd.
type Step struct {
	Name string   // the name in the markers, e.g. "device/camera"
	Dir  string   // the guest directory it runs in ("/" when empty)
	Args []string // the command and its arguments
}

// GuestTest is the step that runs a Go test binary in the guest the way the harness runs
// every one: verbose, only the tests matching run, with the package's own timeout.
func GuestTest(name, binary, dir, run string) Step {
	return Step{Name: name, Dir: dir, Args: []string{binary, "-test.v", "-test.run", run, "-test.timeout", "5m"}}
}

// InitScript returns the guest's /init: a busybox shell script that mounts proc, sysfs,
// devtmpfs, configfs on /sys/kernel/config (where the kernel has it built in: the x86-64
// test kernel does, Debian's arm64 kernel does not) and a tmpfs on /tmp, brings up lo (and eth0 at
// QEMU's user-network address when there is one), exports VBOARD=1, LD_LIBRARY_PATH=/lib
// (where AddELF puts shared libraries) and env, prints the boot
// log, runs each step in turn, prints MarkerDone and reboots at once (QEMU runs with
// -no-reboot, so it exits). Kernel messages logged during a step are printed inside its
// bracket, so a failing step's output shows them.
func InitScript(env []string, steps []Step) []byte {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# /init of the virtual board, written by internal/vboard.
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LD_LIBRARY_PATH=/lib HOME=/tmp TMPDIR=/tmp VBOARD=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -d /sys/kernel/config ] && mount -t configfs configfs /sys/kernel/config
mount -t tmpfs tmpfs /tmp
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
	ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
fi
`)
	for _, kv := range env {
		fmt.Fprintf(&b, "export %s\n", quote(kv))
	}
	b.WriteString(`echo "VBOARD-BOOT $(uname -srm)"
dmesg -c
step() {
	name=$1 dir=$2
	shift 2
	echo "` + MarkerBegin + `$name"
	(cd "$dir" && exec "$@")
	rc=$?
	dmesg -c
	echo "` + MarkerEnd + `$name rc=$rc"
}
`)
	for _, s := range steps {
		dir := s.Dir
		if dir == "" {
			dir = "/"
		}
		args := []string{"step", quote(s.Name), quote(dir)}
		for _, a := range s.Args {
			args = append(args, quote(a))
		}
		b.WriteString(strings.Join(args, " ") + "\n")
	}
	b.WriteString("echo " + MarkerDone + "\nreboot -f\n")
	return []byte(b.String())
}

// quote makes s one shell word.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
