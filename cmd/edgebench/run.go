package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// errChecksFailed is returned when a run finished but a check (every viewer got a keyframe,
// the server returned to its baseline) did not pass.
var errChecksFailed = errors.New("some checks failed")

// run is edgebench: publish (optionally), then each step of viewers, then the report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	api, err := newViewerAPI(o.loopbackOnly, o.transportCC)
	if err != nil {
		return err
	}
	b := &bench{opts: o, log: log, api: api, http: &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
	}}}
	defer b.http.CloseIdleConnections()

	if o.publish != "" {
		log.Info("encoding the publish clip", "seconds", o.publishSeconds, "size", fmt.Sprintf("%dx%d", o.publishW, o.publishH),
			"fps", o.publishFPS, "kbps", o.publishKbps)
		clip, err := encodeClip(o.publishSeconds, o.publishW, o.publishH, o.publishFPS, o.publishKbps*1000, o.publishGrain)
		if err != nil {
			return err
		}
		var bytes int
		for _, f := range clip {
			bytes += len(f.data)
		}
		log.Info("publish clip encoded", "frames", len(clip), "kbps", bytes*8*o.publishFPS/len(clip)/1000)
		b.hop = newHopClock()
		pub, err := startPublisher(ctx, log, b.http, o.publish, o.token, clip, o.publishFPS, o.publishPacing, o.loopbackOnly, b.hop)
		if err != nil {
			return err
		}
		defer func() {
			if err := pub.Close(); err != nil {
				log.Warn("ending the WHIP session", "err", err)
			}
		}()
		sleep(ctx, 2*time.Second) // let the server see a keyframe before viewers come
	}

	report := runReport{Server: o.serverPID, Whep: o.whep, Publish: o.publish, Ramp: o.ramp, WindowSec: o.duration.Seconds()}
	report.Baseline = b.sample(ctx)
	if o.serverPID > 0 && report.Baseline.RSS < 0 {
		return fmt.Errorf("-server-pid %d: cannot read the process (not running, or not on this machine)", o.serverPID)
	}
	if o.serverPID > 0 { // what the server costs with no viewers (encoding, for edged)
		t0, c0 := time.Now(), report.Baseline.CPU
		sleep(ctx, 3*time.Second)
		report.Baseline = b.sample(ctx)
		report.Baseline.CPUPct = 100 * (report.Baseline.CPU - c0).Seconds() / time.Since(t0).Seconds()
	}
	log.Info("server baseline", "rss_kib", report.Baseline.RSS>>10, "goroutines", report.Baseline.Goroutines,
		"cpu_pct", round(report.Baseline.CPUPct))
	if !o.json {
		printHeader(stdout)
	}
	for i, n := range o.steps {
		if ctx.Err() != nil {
			break
		}
		if i > 0 {
			sleep(ctx, 2*time.Second)
		}
		res := b.step(ctx, n, report.Baseline)
		report.Steps = append(report.Steps, res)
		if !o.json {
			printRow(stdout, res)
		}
	}
	js, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	if o.out != "" {
		if err := os.WriteFile(o.out, js, 0o644); err != nil {
			return err
		}
	}
	if o.json {
		if _, err := stdout.Write(js); err != nil {
			return err
		}
	} else {
		printChecks(stdout, report.Steps)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, s := range report.Steps {
		for _, c := range s.Checks {
			if !c.Pass {
				return errChecksFailed
			}
		}
	}
	return nil
}

// bench holds what every step shares.
type bench struct {
	opts options
	log  *slog.Logger
	api  *webrtc.API
	http *http.Client
	hop  *hopClock // when publishing: the server's hop as publisher and viewers see it
}

// serverSample is the server's footprint at one moment; -1 where unknown.
type serverSample struct {
	RSS        int64         `json:"rss_bytes"`
	Goroutines int           `json:"goroutines"`
	CPU        time.Duration `json:"-"`
	CPUPct     float64       `json:"cpu_pct,omitempty"` // baseline only: of one core, no viewers
}

func (b *bench) sample(ctx context.Context) serverSample {
	s := serverSample{RSS: -1, Goroutines: -1}
	if b.opts.serverPID > 0 {
		if p, err := readProc(b.opts.serverPID); err != nil {
			b.log.Warn("reading the server process", "pid", b.opts.serverPID, "err", err)
		} else {
			s.RSS, s.CPU = p.RSS, p.CPU
		}
	}
	if b.opts.metrics != "" {
		if g, err := goroutines(ctx, b.http, b.opts.metrics, b.opts.token); err != nil {
			b.log.Warn("reading the server's goroutines", "url", b.opts.metrics, "err", err)
		} else {
			s.Goroutines = g
		}
	}
	return s
}

// stepResult is one run of N viewers.
type stepResult struct {
	Viewers       int      `json:"viewers"`
	Joined        int      `json:"joined"`        // sessions created (201) and connected
	Keyframes     int      `json:"with_keyframe"` // viewers that received a complete IDR
	WithPackets   int      `json:"with_packets"`  // viewers that received packets in the window
	JoinErrors    []string `json:"join_errors,omitempty"`
	AnswerP50Ms   float64  `json:"answer_p50_ms"` // POST -> 201
	FirstPktP50Ms float64  `json:"first_packet_p50_ms"`
	TTFFP50Ms     float64  `json:"ttff_p50_ms"` // POST -> first complete keyframe
	TTFFP99Ms     float64  `json:"ttff_p99_ms"`
	TTFFMaxMs     float64  `json:"ttff_max_ms"`
	// The server's hop, publisher's send to a viewer's receive, over the window (-publish only).
	HopSamples int     `json:"hop_samples,omitempty"`
	HopP50Ms   float64 `json:"hop_p50_ms,omitempty"`
	HopP99Ms   float64 `json:"hop_p99_ms,omitempty"`
	HopMaxMs   float64 `json:"hop_max_ms,omitempty"`
	JoinSec    float64 `json:"join_seconds"` // first POST to last keyframe

	KbpsAvg    float64  `json:"kbps_avg"`
	KbpsMin    float64  `json:"kbps_min"`
	PacketsAvg float64  `json:"packets_per_s_avg"`
	LossPct    float64  `json:"loss_pct"`
	Window     seqStats `json:"window_seq"` // all viewers together, over the window

	ServerCPUPct          float64 `json:"server_cpu_pct"` // of one core, whole server
	ServerCPUPctPerViewer float64 `json:"server_cpu_pct_per_viewer"`
	// Marginal: the server's CPU above its baseline (no viewers), per viewer.
	ServerCPUPctPerViewerMarginal float64 `json:"server_cpu_pct_per_viewer_marginal"`
	// ServerUsPerPacket is the server's CPU above its baseline per RTP packet the viewers
	// received: the cost of forwarding one packet to one viewer, whatever the bitrate.
	ServerUsPerPacket float64 `json:"server_us_per_packet"`
	ClientCPUPct      float64 `json:"client_cpu_pct"` // edgebench itself, of one core
	// HostBusyPct is the whole machine's CPU use in the window, of all HostCores together:
	// server, edgebench and everything else that ran.
	HostBusyPct float64 `json:"host_busy_pct"`
	HostCores   int     `json:"host_cores"`
	// HostUDPDrops is datagrams the kernel dropped on full receive buffers in the window,
	// machine-wide (server, viewers and anything else).
	HostUDPDrops uint64 `json:"host_udp_rcvbuf_drops"`

	Before          serverSample `json:"before"`
	With            serverSample `json:"with"`
	After           serverSample `json:"after"`
	RSSPerViewerKiB float64      `json:"rss_per_viewer_kib"`
	SettledAfterSec float64      `json:"settled_after_s"`
	Checks          []check      `json:"checks"`
}

// check is one PASS/FAIL line.
type check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// report is the whole run.
type runReport struct {
	Whep      string       `json:"whep"`
	Publish   string       `json:"publish,omitempty"`
	Server    int          `json:"server_pid,omitempty"`
	Ramp      float64      `json:"ramp_per_s"`
	WindowSec float64      `json:"window_s"`
	Baseline  serverSample `json:"baseline"`
	Steps     []stepResult `json:"steps"`
}

// step joins n viewers at the ramp rate, waits for their first keyframes, measures a window,
// closes them, and waits for the server to settle back to baseline.
func (b *bench) step(ctx context.Context, n int, baseline serverSample) stepResult {
	o := b.opts
	res := stepResult{Viewers: n}
	res.Before = b.sample(ctx)
	b.log.Info("step: joining viewers", "viewers", n, "ramp_per_s", o.ramp)

	viewers := make([]*viewer, n)
	joinErr := make([]error, n)
	var joins sync.WaitGroup
	t0 := time.Now()
	for i := range viewers {
		if o.ramp > 0 {
			at := t0.Add(time.Duration(float64(i) / o.ramp * float64(time.Second)))
			if !sleep(ctx, time.Until(at)) {
				viewers = viewers[:i]
				break
			}
		}
		v := newViewer(b.http, o.whep, o.token, b.hop)
		viewers[i] = v
		joins.Go(func() {
			jctx, cancel := context.WithTimeout(ctx, o.joinTimeout)
			defer cancel()
			if err := v.join(jctx, b.api); err != nil {
				joinErr[i] = err
				return
			}
			select {
			case <-v.gotFrame:
			case <-jctx.Done():
				joinErr[i] = fmt.Errorf("no keyframe within %v", o.joinTimeout)
			}
		})
	}
	joins.Wait()
	res.JoinSec = time.Since(t0).Seconds()

	var answered, firstPkt, ttff []time.Duration
	errCount := map[string]int{}
	for i, v := range viewers {
		a, f, t := v.timings()
		if a > 0 {
			answered = append(answered, a)
		}
		if f > 0 {
			firstPkt = append(firstPkt, f)
			res.Joined++
		}
		if t > 0 {
			ttff = append(ttff, t)
			res.Keyframes++
		}
		if joinErr[i] != nil {
			errCount[joinErr[i].Error()]++
		}
	}
	for msg, c := range errCount {
		res.JoinErrors = append(res.JoinErrors, fmt.Sprintf("%d× %s", c, msg))
	}
	slices.Sort(res.JoinErrors)
	res.AnswerP50Ms = ms(percentile(answered, 50))
	res.FirstPktP50Ms = ms(percentile(firstPkt, 50))
	res.TTFFP50Ms, res.TTFFP99Ms, res.TTFFMaxMs = ms(percentile(ttff, 50)), ms(percentile(ttff, 99)), ms(percentile(ttff, 100))
	b.log.Info("step: joined", "viewers", n, "with_keyframe", res.Keyframes, "ttff_p50_ms", res.TTFFP50Ms,
		"ttff_p99_ms", res.TTFFP99Ms, "errors", len(res.JoinErrors))

	// The measured window.
	sleep(ctx, o.warmup)
	start := make([]viewerCounters, len(viewers))
	for i, v := range viewers {
		start[i] = v.snapshot()
	}
	srv0, cli0 := b.sample(ctx), selfCPU()
	busy0, total0, hostErr := hostCPU()
	drops0, dropsErr := udpRcvbufErrors()
	if b.hop != nil {
		b.hop.window() // hops of the joins are not the window's
	}
	w0 := time.Now()
	sleep(ctx, o.duration)
	window := time.Since(w0)
	if b.hop != nil {
		hops := b.hop.window()
		p50, p99, worst := hopPercentiles(hops)
		exact := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		res.HopSamples, res.HopP50Ms, res.HopP99Ms, res.HopMaxMs = len(hops), exact(p50), exact(p99), exact(worst)
	}
	srv1, cli1 := b.sample(ctx), selfCPU()
	busy1, total1, hostErr1 := hostCPU()
	if drops1, err := udpRcvbufErrors(); err == nil && dropsErr == nil {
		res.HostUDPDrops = drops1 - drops0
	}
	if hostErr == nil && hostErr1 == nil && total1 > total0 {
		// Everything else on the machine: the figures above are only as good as this is low.
		res.HostBusyPct = 100 * float64(busy1-busy0) / float64(total1-total0)
		res.HostCores = runtime.NumCPU()
	}
	res.With = srv1
	var kbps []float64
	var packets float64
	for i, v := range viewers {
		c := v.snapshot()
		d := c.Seq.sub(start[i].Seq)
		res.Window.Expected += d.Expected
		res.Window.Received += d.Received
		res.Window.Duplicates += d.Duplicates
		res.Window.Recovered += d.Recovered
		res.Window.Late += d.Late
		if joinErr[i] != nil && c.Packets == 0 {
			continue // failed viewers do not pull the delivered rate down; they are counted above
		}
		if c.Packets > start[i].Packets {
			res.WithPackets++
		}
		kbps = append(kbps, float64(c.Bytes-start[i].Bytes)*8/window.Seconds()/1000)
		packets += float64(c.Packets - start[i].Packets)
	}
	if len(kbps) > 0 {
		var sum float64
		for _, k := range kbps {
			sum += k
		}
		res.KbpsAvg, res.KbpsMin = sum/float64(len(kbps)), slices.Min(kbps)
		res.PacketsAvg = packets / float64(len(kbps)) / window.Seconds()
	}
	if res.Window.Expected > 0 {
		res.LossPct = 100 * float64(res.Window.Lost()) / float64(res.Window.Expected)
	}
	if o.serverPID > 0 {
		res.ServerCPUPct = 100 * (srv1.CPU - srv0.CPU).Seconds() / window.Seconds()
		res.ServerCPUPctPerViewer = res.ServerCPUPct / float64(n)
		res.ServerCPUPctPerViewerMarginal = (res.ServerCPUPct - baseline.CPUPct) / float64(n)
		if packets > 0 {
			res.ServerUsPerPacket = (res.ServerCPUPct - baseline.CPUPct) / 100 * window.Seconds() * 1e6 / packets
		}
	}
	res.ClientCPUPct = 100 * (cli1 - cli0).Seconds() / window.Seconds()
	if res.Before.RSS >= 0 && res.With.RSS >= 0 {
		res.RSSPerViewerKiB = float64(res.With.RSS-res.Before.RSS) / 1024 / float64(n)
	}
	b.log.Info("step: window done", "viewers", n, "kbps_avg", round(res.KbpsAvg), "loss_pct", res.LossPct, "hop_p50_ms", res.HopP50Ms, "hop_p99_ms", res.HopP99Ms,
		"server_cpu_pct", round(res.ServerCPUPct), "client_cpu_pct", round(res.ClientCPUPct), "host_busy_pct", round(res.HostBusyPct), "host_udp_drops", res.HostUDPDrops)

	// Leave, then give the server time to let go of everything.
	var closes sync.WaitGroup
	sem := make(chan struct{}, 32)
	closeErrs := 0
	var mu sync.Mutex
	for _, v := range viewers {
		closes.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := v.close(); err != nil {
				mu.Lock()
				closeErrs++
				mu.Unlock()
			}
		})
	}
	closes.Wait()
	left := time.Now()
	for {
		res.After = b.sample(ctx)
		if b.settled(baseline, res.After) || time.Since(left) > o.settle || !sleep(ctx, 500*time.Millisecond) {
			break
		}
	}
	res.SettledAfterSec = time.Since(left).Seconds()
	res.Checks = b.checks(res, baseline, closeErrs)
	return res
}

// settled says whether the server is back within tolerance of the baseline.
func (b *bench) settled(base, now serverSample) bool {
	ok := true
	if base.RSS >= 0 && now.RSS >= 0 {
		ok = ok && now.RSS <= base.RSS+b.opts.rssTolerance
	}
	if base.Goroutines >= 0 && now.Goroutines >= 0 {
		ok = ok && now.Goroutines <= base.Goroutines+b.opts.goroutineTolerance
	}
	return ok
}

func (b *bench) checks(res stepResult, base serverSample, closeErrs int) []check {
	cs := []check{{
		Name: "every viewer got a keyframe", Pass: res.Keyframes == res.Viewers,
		Detail: fmt.Sprintf("%d of %d", res.Keyframes, res.Viewers),
	}, {
		Name: "every session ended cleanly (DELETE)", Pass: closeErrs == 0,
		Detail: fmt.Sprintf("%d errors", closeErrs),
	}}
	if base.Goroutines >= 0 && res.After.Goroutines >= 0 {
		cs = append(cs, check{
			Name: "goroutines back to baseline", Pass: res.After.Goroutines <= base.Goroutines+b.opts.goroutineTolerance,
			Detail: fmt.Sprintf("%d after, baseline %d, tolerance %d", res.After.Goroutines, base.Goroutines, b.opts.goroutineTolerance),
		})
	}
	if base.RSS >= 0 && res.After.RSS >= 0 {
		cs = append(cs, check{
			Name: "RSS back to baseline", Pass: res.After.RSS <= base.RSS+b.opts.rssTolerance,
			Detail: fmt.Sprintf("%.1f MiB after (%.1f with viewers), baseline %.1f MiB, tolerance %d MiB",
				mib(res.After.RSS), mib(res.With.RSS), mib(base.RSS), b.opts.rssTolerance>>20),
		})
	}
	return cs
}

// selfCPU is edgebench's own CPU time so far.
func selfCPU() time.Duration {
	p, err := readProc(os.Getpid())
	if err != nil {
		return 0
	}
	return p.CPU
}

// percentile returns the p-th percentile (nearest rank) of ds; 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// sleep waits d or until ctx ends, and reports whether it waited the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func ms(d time.Duration) float64 { return round(float64(d.Microseconds()) / 1000) }
func mib(b int64) float64        { return float64(b) / (1 << 20) }
func round(f float64) float64    { return float64(int64(f*10+0.5)) / 10 }
