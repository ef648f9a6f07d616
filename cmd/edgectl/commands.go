package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeflux/edge/provisioning/api"
)

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *conn) {
	fs := flag.NewFlagSet("edgectl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &conn{}
	c.flags(fs)
	return fs, c
}

// parse parses flags; -h returns flag.ErrHelp, which run treats as success.
func parse(fs *flag.FlagSet, args []string) error {
	return fs.Parse(args)
}

func verb(args []string, name, verbs string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, fmt.Errorf("edgectl %s: give one of: %s", name, verbs)
	}
	return args[0], args[1:], nil
}

// cmdClaim: edgectl claim create|list.
func cmdClaim(args []string, stdout, stderr io.Writer) error {
	v, args, err := verb(args, "claim", "create, list")
	if err != nil {
		return err
	}
	fs, c := newFlags("claim "+v, stderr)
	switch v {
	case "create":
		group := fs.String("group", "default", "group the enrolled devices join")
		uses := fs.Int("uses", 1, "how many devices may enrol with it (1 = single-use)")
		expires := fs.Duration("expires", 24*time.Hour, "how long it is valid")
		approval := fs.Bool("approval", false, "devices wait for `edgectl devices approve` before they get configuration")
		note := fs.String("note", "", "a note for the audit log")
		out := fs.String("o", "", "write the claim file (for the boot partition) here, mode 0600")
		if err := parse(fs, args); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		var ct api.ClaimToken
		if err := cl.do("POST", "/v1/admin/claims", api.ClaimCreate{Group: *group, MaxUses: *uses, ExpiresIn: expires.String(),
			RequireApproval: *approval, Note: *note}, &ct); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "claim %s: group %s, %d use(s), expires %s, approval %t\n", ct.ID, ct.Group, ct.MaxUses, ct.ExpiresAt.Local().Format(time.RFC3339), ct.RequireApproval)
		if *out != "" {
			if err := os.WriteFile(*out, []byte(ct.Claim), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "claim file written to %s: copy it to the boot partition as edge-claim.json\n", *out)
			return nil
		}
		fmt.Fprintf(stdout, "token: %s\n(shown once; only its hash is stored)\nclaim file:\n%s", ct.Token, ct.Claim)
		return nil
	case "list":
		if err := parse(fs, args); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		var cs []api.ClaimToken
		if err := cl.do("GET", "/v1/admin/claims", nil, &cs); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tGROUP\tUSES\tEXPIRES\tAPPROVAL\tCREATED BY\tNOTE")
		for _, t := range cs {
			exp := t.ExpiresAt.Local().Format("2006-01-02 15:04")
			if time.Now().After(t.ExpiresAt) {
				exp += " (expired)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%t\t%s\t%s\n", t.ID, t.Group, t.Uses, t.MaxUses, exp, t.RequireApproval, t.CreatedBy, t.Note)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("edgectl claim %s: unknown; use create or list", v)
	}
}

func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

// cmdDevices: edgectl devices list|show|approve|revoke|assign|override|push.
func cmdDevices(args []string, stdout, stderr io.Writer) error {
	v, args, err := verb(args, "devices", "list, show, approve, revoke, assign, override, push")
	if err != nil {
		return err
	}
	fs, c := newFlags("devices "+v, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	group := ""
	if v == "list" {
		fs.StringVar(&group, "group", "", "only this group's devices")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	need := map[string]int{"list": 0, "show": 1, "approve": 1, "revoke": 1, "assign": 2, "override": 2, "push": 1}
	n, ok := need[v]
	if !ok {
		return fmt.Errorf("edgectl devices %s: unknown; use list, show, approve, revoke, assign, override or push", v)
	}
	if len(pos) != n {
		return fmt.Errorf("edgectl devices %s: want %d argument(s), got %d", v, n, len(pos))
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var d api.Device
	switch v {
	case "list":
		path := "/v1/admin/devices"
		if group != "" {
			path += "?group=" + url.QueryEscape(group)
		}
		var ds []api.Device
		if err := cl.do("GET", path, nil, &ds); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, ds)
		}
		now := time.Now()
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tSERIAL\tBOARD\tGROUP\tSTATUS\tLAST SEEN\tCONFIG\tAGENT\tFIRMWARE\tHEALTH")
		online := 0
		for _, d := range ds {
			st := d.Status
			if d.Status == api.StatusActive {
				st = "offline"
				if d.Online {
					st, online = "online", online+1
				}
			}
			cfg := strconv.FormatUint(d.AppliedVersion, 10)
			if d.BundleVersion != d.AppliedVersion {
				cfg += "→" + strconv.FormatUint(d.BundleVersion, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Serial, dash(d.Board), d.Group, st, ago(d.LastSeen, now), cfg,
				dash(d.AgentVersion), dash(d.FirmwareVersion), dash(d.Health))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d devices, %d online\n", len(ds), online)
		return nil
	case "show":
		err = cl.do("GET", "/v1/admin/devices/"+url.PathEscape(pos[0]), nil, &d)
	case "approve", "revoke", "push":
		err = cl.do("POST", "/v1/admin/devices/"+url.PathEscape(pos[0])+"/"+v, nil, &d)
	case "assign":
		err = cl.do("PUT", "/v1/admin/devices/"+url.PathEscape(pos[0])+"/group", api.DeviceAssign{Group: pos[1]}, &d)
	case "override":
		var data []byte
		if pos[1] != "none" {
			if data, err = readArg(pos[1]); err != nil {
				return err
			}
		}
		err = cl.do("PUT", "/v1/admin/devices/"+url.PathEscape(pos[0])+"/override", api.DeviceOverride{Config: string(data)}, &d)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, d)
	}
	showDevice(stdout, d)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func readArg(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func showDevice(w io.Writer, d api.Device) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("device", d.ID)
	row("serial", d.Serial)
	row("board", dash(d.Board))
	row("MACs", dash(strings.Join(d.MACs, ", ")))
	row("group", d.Group)
	row("status", d.Status)
	row("online", strconv.FormatBool(d.Online))
	row("last seen", ago(d.LastSeen, time.Now()))
	row("enrolled", d.EnrolledAt.Local().Format(time.RFC3339))
	row("certificate", d.CertSerial)
	row("config", fmt.Sprintf("applied %d, newest issued %d", d.AppliedVersion, d.BundleVersion))
	row("agent", dash(d.AgentVersion))
	row("firmware", dash(d.FirmwareVersion))
	row("health", dash(d.Health))
	row("camera", dash(d.Camera))
	row("encoder", dash(d.Encoder))
	row("uptime", (time.Duration(d.UptimeSeconds) * time.Second).String())
	row("last error", dash(d.LastError))
	tw.Flush()
	if d.Override != "" {
		fmt.Fprintf(w, "override:\n%s", d.Override)
	}
}

// cmdGroups: edgectl groups list|set NAME FILE.
func cmdGroups(args []string, stdout, stderr io.Writer) error {
	v, args, err := verb(args, "groups", "list, set")
	if err != nil {
		return err
	}
	fs, c := newFlags("groups "+v, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	switch v {
	case "list":
		var gs []api.Group
		if err := cl.do("GET", "/v1/admin/groups", nil, &gs); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tDEVICES\tUPDATED\tBY")
		for _, g := range gs {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", g.Name, g.Devices, g.UpdatedAt.Local().Format("2006-01-02 15:04:05"), g.UpdatedBy)
		}
		return tw.Flush()
	case "set":
		if fs.NArg() != 2 {
			return errors.New("edgectl groups set NAME FILE: the edged YAML template for the group (- for stdin)")
		}
		data, err := readArg(fs.Arg(1))
		if err != nil {
			return err
		}
		var res api.GroupPutResult
		if err := cl.do("PUT", "/v1/admin/groups/"+url.PathEscape(fs.Arg(0)), api.GroupPut{Config: string(data)}, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "group %s: configuration stored and pushed to %d devices\n", res.Group, res.Devices)
		return nil
	default:
		return fmt.Errorf("edgectl groups %s: unknown; use list or set", v)
	}
}

// cmdAudit: edgectl audit.
func cmdAudit(args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("audit", stderr)
	limit := fs.Int("limit", 50, "entries to show, newest first")
	if err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var es []api.AuditEntry
	if err := cl.do("GET", "/v1/admin/audit?limit="+strconv.Itoa(*limit), nil, &es); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tTARGET\tDETAIL")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Local().Format("2006-01-02 15:04:05.000"), e.Actor, e.Action, e.Target, e.Detail)
	}
	return tw.Flush()
}
