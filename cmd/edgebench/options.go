package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// options is edgebench's command line.
type options struct {
	whep, publish, token, metrics string
	out                           string // also write the JSON report here
	steps                         []int
	ramp                          float64 // viewers per second; 0 = all at once
	duration, warmup              time.Duration
	joinTimeout, settle           time.Duration
	serverPID                     int
	rssTolerance                  int64 // bytes above baseline that still counts as back
	goroutineTolerance            int
	json                          bool
	loopbackOnly                  bool
	transportCC                   bool

	publishSeconds float64
	publishW       int
	publishH       int
	publishFPS     int
	publishPacing  float64
	publishKbps    int
	publishGrain   int
}

func parseOptions(args []string, output io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("edgebench", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(output, `usage: edgebench -whep URL [-token T] [-viewers N | -steps 50,100,200] [flags]

Opens WHEP viewers against a server (and optionally publishes a stream over WHIP first),
measures a window of -duration, then closes them and checks that the server returns to its
baseline. Standard WHIP/WHEP only (RFC 9725), so any server works.

`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.whep, "whep", "", "WHEP endpoint the viewers POST to, e.g. http://127.0.0.1:8080/whep/camera")
	fs.StringVar(&o.publish, "publish", "", "WHIP endpoint to publish a looped 720p H.264 test stream to first (optional)")
	fs.StringVar(&o.token, "token", "", "bearer token for every request (empty: no Authorization header)")
	viewers := fs.Int("viewers", 10, "viewers in the run")
	steps := fs.String("steps", "", "comma-separated viewer counts run one after another, e.g. 50,100,200,500 (overrides -viewers)")
	ramp := fs.String("ramp", "200/s", `how fast viewers join: "N/s", or "0" for all at once`)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured window once every viewer has joined")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "pause between the last join and the window")
	fs.DurationVar(&o.joinTimeout, "join-timeout", 20*time.Second, "a viewer without a keyframe this long after its POST counts as failed")
	fs.DurationVar(&o.settle, "settle", 15*time.Second, "after viewers leave, wait up to this long for the server to return to its baseline")
	fs.IntVar(&o.serverPID, "server-pid", 0, "server process on this machine: CPU from /proc/PID/stat, RSS from /proc/PID/status")
	fs.StringVar(&o.metrics, "metrics", "", "Prometheus endpoint of the server for go_goroutines, e.g. http://127.0.0.1:8080/metrics (optional)")
	rssTol := fs.Int("rss-tolerance", 16, "MiB above the baseline RSS that still counts as returned")
	fs.IntVar(&o.goroutineTolerance, "goroutine-tolerance", 5, "goroutines above the baseline that still count as returned")
	fs.BoolVar(&o.transportCC, "twcc", false, "viewers negotiate transport-wide congestion control and send its feedback, as browsers do (default: neither TWCC nor REMB)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&o.out, "out", "", "also write the JSON report to this file")
	ice := fs.String("ice-loopback", "auto", `offer only loopback ICE candidates: "auto" (when the WHEP host is a loopback address), "true" or "false"`)
	fs.Float64Var(&o.publishSeconds, "publish-clip", 4, "seconds of test pattern encoded once at start and looped")
	size := fs.String("publish-size", "1280x720", "published picture size")
	fs.IntVar(&o.publishFPS, "publish-fps", 30, "published frame rate")
	fs.Float64Var(&o.publishPacing, "publish-pacing", 2.5, "space each frame's packets at this multiple of the stream's rate, as browsers' pacers do (0: all of a frame at once)")
	fs.IntVar(&o.publishKbps, "publish-kbps", 2000, "published bitrate, kbit/s")
	fs.IntVar(&o.publishGrain, "publish-grain", 4, "noise added to the test pattern so the encoder reaches -publish-kbps (0: none)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q; every setting is a flag (see -h)", fs.Arg(0))
	}
	var errs []error
	if o.whep == "" {
		errs = append(errs, errors.New("-whep: required, e.g. -whep http://127.0.0.1:8080/whep/camera"))
	} else if u, err := url.Parse(o.whep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("-whep %q: not an http(s) URL", o.whep))
	}
	if o.publish != "" {
		if u, err := url.Parse(o.publish); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("-publish %q: not an http(s) URL", o.publish))
		}
	}
	if *steps != "" {
		for s := range strings.SplitSeq(*steps, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("-steps %q: %q is not a viewer count >= 1", *steps, s))
				continue
			}
			o.steps = append(o.steps, n)
		}
	} else if *viewers < 1 {
		errs = append(errs, fmt.Errorf("-viewers %d: need at least 1", *viewers))
	} else {
		o.steps = []int{*viewers}
	}
	r, err := parseRamp(*ramp)
	if err != nil {
		errs = append(errs, err)
	}
	o.ramp = r
	if o.duration <= 0 {
		errs = append(errs, fmt.Errorf("-duration %v: must be positive", o.duration))
	}
	o.rssTolerance = int64(*rssTol) << 20
	if _, err := fmt.Sscanf(*size, "%dx%d", &o.publishW, &o.publishH); err != nil {
		errs = append(errs, fmt.Errorf("-publish-size %q: use WxH, e.g. 1280x720", *size))
	}
	switch *ice {
	case "auto":
		o.loopbackOnly = isLoopbackURL(o.whep)
	case "true", "false":
		o.loopbackOnly = *ice == "true"
	default:
		errs = append(errs, fmt.Errorf("-ice-loopback %q: use auto, true or false", *ice))
	}
	return o, errors.Join(errs...)
}

// parseRamp reads "200/s" (or "200") as viewers per second; "0" or "all" means all at once.
func parseRamp(s string) (float64, error) {
	if s == "all" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "/s"), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf(`-ramp %q: use viewers per second such as "200/s", or "0" for all at once`, s)
	}
	return v, nil
}

func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}
