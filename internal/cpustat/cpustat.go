// Package cpustat reads the CPU time this process has used, for benchmarks that report CPU
// per frame or per packet rather than wall-clock time.
package cpustat

import (
	"syscall"
	"time"
)

// Process returns user plus system CPU time used by the process so far.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
