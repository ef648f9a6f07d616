package vboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Guest describes one boot of the virtual board.
type Guest struct {
	Arch       string        // "x86_64" (pc, serial ttyS0) or "arm64" (virt with a cortex-a57, ttyAMA0)
	Kernel     string        // bzImage (x86_64) or Image/vmlinuz (arm64)
	Initramfs  string        // gzip-compressed newc cpio, see Initramfs
	Cmdline    string        // appended to the console, panic and log level options Boot sets
	Memory     int           // MiB; 1024 when zero
	CPUs       int           // 2 when zero
	Timeout    time.Duration // QEMU is killed after it; 10 minutes when zero
	HostFwd    []Forward     // TCP ports forwarded from the host's loopback into the guest
	QMP        bool          // open a QMP socket (Run.QMP)
	ConsoleLog string        // also write the serial console to this file, when set
}

// Forward forwards a TCP port on the host's loopback to a port of the guest.
type Forward struct {
	Host      string // "127.0.0.1:PORT"; only loopback addresses are accepted
	GuestPort int
}

// ErrExited is returned when waiting for console output of a guest that has stopped.
var ErrExited = errors.New("guest exited")

// ErrTimeout is returned by Run.Wait when the guest was killed at Guest.Timeout.
var ErrTimeout = errors.New("guest did not power off in time and was killed")

// Run is a running (or finished) guest.
type Run struct {
	cmd     *exec.Cmd
	console *console
	logFile *os.File
	qmp     *QMP
	tmp     string
	cancel  context.CancelFunc
	timeout time.Duration

	done      chan struct{}
	err       error // set before done is closed
	closeOnce sync.Once
}

// Boot starts QEMU with TCG (no KVM) and the serial console on its standard output, which
// is collected line by line (Run.Lines, Run.WaitFor) and copied to Guest.ConsoleLog. QEMU
// runs with -no-reboot, so a guest that reboots or powers off ends it. It is killed at
// Guest.Timeout, when ctx is done, or when this process dies.
func Boot(ctx context.Context, g Guest) (*Run, error) {
	if g.Memory == 0 {
		g.Memory = 1024
	}
	if g.CPUs == 0 {
		g.CPUs = 2
	}
	if g.Timeout == 0 {
		g.Timeout = 10 * time.Minute
	}
	tmp, err := os.MkdirTemp("", "vboard-")
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", g.Arch, err)
	}
	r := &Run{tmp: tmp, timeout: g.Timeout, done: make(chan struct{})}
	bin, args, err := qemuArgs(g, filepath.Join(tmp, "qmp.sock"))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("boot %s: %w", g.Arch, err)
	}
	if _, err := exec.LookPath(bin); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("boot %s: %w (apt-get install %s, or .ci/install-deps test)", g.Arch, err, qemuPackage(g.Arch))
	}
	var log io.Writer
	if g.ConsoleLog != "" {
		if err := os.MkdirAll(filepath.Dir(g.ConsoleLog), 0o755); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("boot %s: console log: %w", g.Arch, err)
		}
		if r.logFile, err = os.Create(g.ConsoleLog); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("boot %s: console log: %w", g.Arch, err)
		}
		fmt.Fprintf(r.logFile, "# %s %s\n", bin, strings.Join(args, " "))
		log = r.logFile
	}
	r.console = newConsole(log)

	runCtx, cancel := context.WithTimeout(ctx, g.Timeout)
	r.cancel = cancel
	r.cmd = exec.CommandContext(runCtx, bin, args...)
	r.cmd.Stdout = r.console
	r.cmd.Stderr = r.console // QEMU's own complaints belong next to the guest's
	r.cmd.WaitDelay = 5 * time.Second
	r.cmd.SysProcAttr = dieWithParent()
	if err := r.cmd.Start(); err != nil {
		cancel()
		r.cleanup()
		return nil, fmt.Errorf("boot %s: start %s: %w", g.Arch, bin, err)
	}
	go r.wait(runCtx)

	if g.QMP {
		q, err := dialQMPWhileRunning(ctx, filepath.Join(tmp, "qmp.sock"), r.done)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("boot %s: %w", g.Arch, err)
		}
		r.qmp = q
	}
	return r, nil
}

func (r *Run) wait(runCtx context.Context) {
	err := r.cmd.Wait()
	switch {
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("%w (after %v)", ErrTimeout, r.timeout)
	case runCtx.Err() != nil:
		err = fmt.Errorf("guest stopped: %w", runCtx.Err())
	case err != nil:
		err = fmt.Errorf("qemu: %w", err)
	}
	r.console.close()
	r.err = err
	close(r.done)
}

func qemuArgs(g Guest, qmpSocket string) (bin string, args []string, err error) {
	var console, nic string
	switch g.Arch {
	case "x86_64":
		bin, console, nic = "qemu-system-x86_64", "ttyS0", "virtio-net-pci"
	case "arm64":
		bin, console, nic = "qemu-system-aarch64", "ttyAMA0", "virtio-net-pci"
		args = append(args, "-M", "virt", "-cpu", "cortex-a57")
	default:
		return "", nil, fmt.Errorf("unknown guest architecture %q (x86_64 or arm64)", g.Arch)
	}
	cmdline := "console=" + console + " panic=-1 loglevel=4 rdinit=/init"
	if g.Cmdline != "" {
		cmdline += " " + g.Cmdline
	}
	args = append(args,
		"-accel", "tcg",
		"-m", fmt.Sprint(g.Memory),
		"-smp", fmt.Sprint(g.CPUs),
		"-nodefaults", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-monitor", "none",
		"-kernel", g.Kernel, "-initrd", g.Initramfs, "-append", cmdline,
	)
	if len(g.HostFwd) > 0 {
		netdev := "user,id=net0,restrict=on"
		for _, f := range g.HostFwd {
			host, port, err := net.SplitHostPort(f.Host)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return "", nil, fmt.Errorf("host forward %q: want a loopback address and port", f.Host)
			}
			netdev += fmt.Sprintf(",hostfwd=tcp:%s:%s-:%d", host, port, f.GuestPort)
		}
		args = append(args, "-netdev", netdev, "-device", nic+",netdev=net0")
	}
	if g.QMP {
		args = append(args, "-qmp", "unix:"+qmpSocket+",server=on,wait=off")
	}
	return bin, args, nil
}

func qemuPackage(arch string) string {
	if arch == "arm64" {
		return "qemu-system-arm"
	}
	return "qemu-system-x86"
}

// Wait waits for QEMU to exit. It returns nil when the guest powered off by itself, and an
// error wrapping ErrTimeout when it was killed at the timeout.
func (r *Run) Wait() error {
	<-r.done
	return r.err
}

// Done is closed when QEMU has exited.
func (r *Run) Done() <-chan struct{} { return r.done }

// Lines returns the console lines so far (all of them once QEMU has exited).
func (r *Run) Lines() []string { return r.console.snapshot() }

// Tail returns the last n console lines.
func (r *Run) Tail(n int) string { return tail(r.console.snapshot(), n) }

// WaitFor waits until the n-th console line containing substr appears; it fails with
// ErrExited if the guest stops first.
func (r *Run) WaitFor(ctx context.Context, substr string, n int) error {
	return r.console.waitFor(ctx, substr, n)
}

// QMP returns the QMP client, when Guest.QMP was set.
func (r *Run) QMP() *QMP { return r.qmp }

// Close kills QEMU if it still runs, waits for it and releases what Boot made. It may be
// called more than once.
func (r *Run) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		r.cleanup()
	})
}

func (r *Run) cleanup() {
	if r.qmp != nil {
		r.qmp.Close()
	}
	if r.logFile != nil {
		r.logFile.Close()
	}
	os.RemoveAll(r.tmp)
}
