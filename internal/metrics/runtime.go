package metrics

import (
	"runtime"
	"runtime/metrics"
)

// RegisterRuntime adds the Go runtime metrics (go_goroutines, go_threads, go_gc_cycles_total,
// go_memstats_heap_alloc_bytes, go_info) and, on Linux, the process metrics from /proc/self
// (process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_start_time_seconds, process_open_fds), with the names Prometheus's own client uses
// so existing dashboards work.
func RegisterRuntime(r *Registry) {
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 {
		return float64(runtime.NumGoroutine())
	})
	r.GaugeFunc("go_threads", "Number of OS threads created.", func() float64 {
		n, _ := runtime.ThreadCreateProfile(nil)
		return float64(n)
	})
	r.CounterFunc("go_gc_cycles_total", "Number of completed GC cycles.", func() float64 {
		return runtimeMetric("/gc/cycles/total:gc-cycles")
	})
	r.GaugeFunc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and still in use.", func() float64 {
		return runtimeMetric("/memory/classes/heap/objects:bytes")
	})
	r.GaugeCollector("go_info", "Information about the Go environment.", []string{"version"}, func(emit func(float64, ...string)) {
		emit(1, runtime.Version())
	})
	registerProcess(r)
}

func runtimeMetric(name string) float64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	switch s[0].Value.Kind() {
	case metrics.KindUint64:
		return float64(s[0].Value.Uint64())
	case metrics.KindFloat64:
		return s[0].Value.Float64()
	}
	return 0
}
