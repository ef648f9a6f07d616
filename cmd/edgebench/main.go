// Command edgebench is a load tool for WebRTC servers that speak standard WHIP and WHEP
// (RFC 9725): it can publish one 720p H.264 stream over WHIP, opens N WHEP viewers, and
// reports time to first frame, delivered bitrate, loss, and the server's CPU, memory and
// goroutines per viewer. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "edgebench:", err)
		os.Exit(1)
	}
}
