package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// userHZ is the kernel's USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is 100
// on every Linux architecture (sysconf(_SC_CLK_TCK) needs cgo to ask).
const userHZ = 100

func registerProcess(r *Registry) {
	r.CounterFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", func() float64 {
		st, err := readStat("/proc/self/stat")
		if err != nil {
			return 0
		}
		return float64(st.utime+st.stime) / userHZ
	})
	r.GaugeFunc("process_resident_memory_bytes", "Resident memory size in bytes.", func() float64 {
		st, err := readStat("/proc/self/stat")
		if err != nil {
			return 0
		}
		return float64(st.rssPages) * float64(os.Getpagesize())
	})
	r.GaugeFunc("process_virtual_memory_bytes", "Virtual memory size in bytes.", func() float64 {
		st, err := readStat("/proc/self/stat")
		if err != nil {
			return 0
		}
		return float64(st.vsize)
	})
	if start, err := startTime(); err == nil {
		r.GaugeFunc("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.", func() float64 { return start })
	}
	r.GaugeFunc("process_open_fds", "Number of open file descriptors.", func() float64 {
		d, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return 0
		}
		return float64(len(d))
	})
}

type procStat struct {
	utime, stime, starttime uint64 // clock ticks
	vsize, rssPages         uint64
}

var errStat = errors.New("metrics: unexpected /proc/self/stat")

// readStat parses /proc/<pid>/stat (proc(5)). The command name is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the last ')'.
func readStat(path string) (procStat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%w: no ')'", errStat)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("%w: %d fields", errStat, len(f)+2)
	}
	var st procStat
	for _, x := range []struct {
		dst   *uint64
		field int // 1-based, as in proc(5)
	}{{&st.utime, 14}, {&st.stime, 15}, {&st.starttime, 22}, {&st.vsize, 23}, {&st.rssPages, 24}} {
		v, err := strconv.ParseUint(string(f[x.field-3]), 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("%w: field %d: %w", errStat, x.field, err)
		}
		*x.dst = v
	}
	return st, nil
}

// startTime is the boot time (btime in /proc/stat) plus the process's starttime.
func startTime() (float64, error) {
	st, err := readStat("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			btime, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("metrics: /proc/stat btime: %w", err)
			}
			return float64(btime) + float64(st.starttime)/userHZ, nil
		}
	}
	return 0, errors.New("metrics: no btime in /proc/stat")
}
