//go:build pprof

package main

// A profiling build (go build -tags pprof ./cmd/edged) serves net/http/pprof on
// 127.0.0.1:6061 for finding where CPU and memory go; release builds have no such port.

import (
	"net/http"
	_ "net/http/pprof"
)

func init() {
	go func() { _ = http.ListenAndServe("127.0.0.1:6061", nil) }()
}
