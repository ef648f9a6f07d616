// Command edge-provision is the appliance's provisioning agent: on first boot it makes the
// device key, enrols with the claim on the boot partition, and from then on applies signed
// configuration bundles to edged's configuration file, atomically and with rollback when edged
// does not become ready. systemd runs it beside edged (systemd/edge-provision.service).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "edge-provision:", err)
		os.Exit(1)
	}
}
