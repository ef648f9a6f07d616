package vboard

import "syscall"

// dieWithParent has the kernel kill QEMU if this process dies first (a test binary killed by
// its -timeout, say), so no guest outlives its test.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
