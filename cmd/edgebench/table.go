package main

import (
	"fmt"
	"io"
	"strconv"
)

const rowFormat = "%7s %6s %9s %9s %9s %9s %7s %8s %8s %9s %7s %8s %6s %12s %10s %13s %8s %8s\n"

func printHeader(w io.Writer) {
	fmt.Fprintf(w, rowFormat, "viewers", "joined", "ttff_p50", "ttff_p99", "kbps_avg", "kbps_min", "loss%",
		"srv_cpu%", "cpu%/vwr", "Δcpu%/vwr", "µs/pkt", "cli_cpu%", "host%", "rss_MiB", "KiB/viewer", "goroutines", "hop_p50", "hop_p99")
}

// printRow prints one step; "-" where the server was not observed.
func printRow(w io.Writer, r stepResult) {
	srv, per, marg, usPkt, rss, kib, gor := "-", "-", "-", "-", "-", "-", "-"
	if r.With.RSS >= 0 {
		srv, per = fmt.Sprintf("%.1f", r.ServerCPUPct), fmt.Sprintf("%.3f", r.ServerCPUPctPerViewer)
		marg = fmt.Sprintf("%.3f", r.ServerCPUPctPerViewerMarginal)
		usPkt = fmt.Sprintf("%.1f", r.ServerUsPerPacket)
		rss = fmt.Sprintf("%.0f>%.0f>%.0f", mib(r.Before.RSS), mib(r.With.RSS), mib(r.After.RSS))
		kib = fmt.Sprintf("%.0f", r.RSSPerViewerKiB)
	}
	hop50, hop99 := "-", "-"
	if r.HopSamples > 0 {
		hop50, hop99 = fmt.Sprintf("%.2fms", r.HopP50Ms), fmt.Sprintf("%.2fms", r.HopP99Ms)
	}
	if r.Before.Goroutines >= 0 {
		gor = fmt.Sprintf("%d>%d>%d", r.Before.Goroutines, r.With.Goroutines, r.After.Goroutines)
	}
	fmt.Fprintf(w, rowFormat, strconv.Itoa(r.Viewers), strconv.Itoa(r.Keyframes),
		fmt.Sprintf("%.0fms", r.TTFFP50Ms), fmt.Sprintf("%.0fms", r.TTFFP99Ms),
		fmt.Sprintf("%.0f", r.KbpsAvg), fmt.Sprintf("%.0f", r.KbpsMin), fmt.Sprintf("%.2f", r.LossPct),
		srv, per, marg, usPkt, fmt.Sprintf("%.0f", r.ClientCPUPct), fmt.Sprintf("%.0f", r.HostBusyPct), rss, kib, gor, hop50, hop99)
}

// printChecks prints every check of every step, PASS or FAIL, and the join errors.
func printChecks(w io.Writer, steps []stepResult) {
	fmt.Fprintln(w)
	for _, s := range steps {
		for _, c := range s.Checks {
			verdict := "PASS"
			if !c.Pass {
				verdict = "FAIL"
			}
			fmt.Fprintf(w, "%s  N=%-4d %s (%s)\n", verdict, s.Viewers, c.Name, c.Detail)
		}
		for _, e := range s.JoinErrors {
			fmt.Fprintf(w, "      N=%-4d join error: %s\n", s.Viewers, e)
		}
	}
}
