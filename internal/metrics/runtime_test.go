package metrics

import (
	"crypto/sha256"
	"runtime"
	"testing"
	"time"
)

func TestRuntimeMetrics(t *testing.T) {
	r := NewRegistry()
	RegisterRuntime(r)
	// Burn some CPU so process_cpu_seconds_total is above zero.
	sum := sha256.Sum256(nil)
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
		sum = sha256.Sum256(sum[:])
	}
	_, e := scrape(t, r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if g := e.series["go_goroutines"]; g < 1 {
		t.Errorf("go_goroutines = %v", g)
	}
	if e.series[`go_info{version="`+runtime.Version()+`"}`] != 1 {
		t.Errorf("go_info missing: %v", e.series)
	}
	if e.types["go_gc_cycles_total"] != "counter" || e.series["go_memstats_heap_alloc_bytes"] <= 0 {
		t.Errorf("go_gc_cycles_total %s, heap %v", e.types["go_gc_cycles_total"], e.series["go_memstats_heap_alloc_bytes"])
	}
	if runtime.GOOS != "linux" {
		return
	}
	if rss := e.series["process_resident_memory_bytes"]; rss < 1<<20 || rss > 1<<36 {
		t.Errorf("process_resident_memory_bytes = %v", rss)
	}
	if vsz := e.series["process_virtual_memory_bytes"]; vsz < e.series["process_resident_memory_bytes"] {
		t.Errorf("process_virtual_memory_bytes = %v is below the resident size", vsz)
	}
	if cpu := e.series["process_cpu_seconds_total"]; cpu <= 0 || e.types["process_cpu_seconds_total"] != "counter" {
		t.Errorf("process_cpu_seconds_total = %v (%s)", cpu, e.types["process_cpu_seconds_total"])
	}
	if age := float64(time.Now().Unix()) - e.series["process_start_time_seconds"]; age < -2 || age > 3600 {
		t.Errorf("process_start_time_seconds is %v s ago", age)
	}
	if fds := e.series["process_open_fds"]; fds < 3 {
		t.Errorf("process_open_fds = %v", fds)
	}
}
