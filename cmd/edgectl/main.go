// Command edgectl is the operator's tool for a fleet of appliances: claim tokens, the device
// list, configuration per group and per device, approval and revocation, through provisiond's
// API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand: edgectl NAME ARGS...
type command struct {
	run  func(args []string, stdout, stderr io.Writer) error
	help string
}

// commands is the dispatch table.
var commands = map[string]command{
	"claim":   {cmdClaim, "create and list claim tokens (zero-touch enrolment)"},
	"devices": {cmdDevices, "list, show, approve, revoke, assign, override and push devices"},
	"groups":  {cmdGroups, "list groups; set a group's configuration template (pushed to its devices)"},
	"audit":   {cmdAudit, "show the audit log"},
	"token":   {cmdToken, "mint an access token for edged's rooms and API"},
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "edgectl:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err := c.run(args[1:], stdout, stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return nil
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: edgectl COMMAND [flags] [args]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].help)
	}
	fmt.Fprintln(w, "\n"+strings.TrimSpace(`
The fleet commands reach provisiond with -server URL (env EDGECTL_SERVER), trust its CA with
-ca FILE (env EDGECTL_CA; provisiond's STATE/ca.crt) and authenticate with -token-file FILE
(env EDGECTL_TOKEN_FILE) or the token in EDGECTL_TOKEN. Run "edgectl COMMAND -h" for more.`))
}
