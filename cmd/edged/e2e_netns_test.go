//go:build e2e && cgo

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/chromedp/chromedp"
)

// Network namespaces for tests that need a real link between peers: each is joined to the
// host by a veth pair on a private /30 (10.99.n.0/30, host .1, namespace .2), and a
// Chromium started in it sees only that link. Nothing but the namespaces and veths the test
// creates is touched; they are deleted when the test ends, and left-overs of a killed run are
// deleted by the next one.

// netnsPrefix names the test's namespaces: edge-e2e-<pid>-<n>.
const netnsPrefix = "edge-e2e-"

type netns struct {
	name         string
	hostIf, nsIf string // veth ends: hostIf stays in the host namespace
	hostIP, nsIP string
}

// needNetns skips the test unless it can make namespaces and shape links.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network-namespace tests need root (ip netns, veth, tc)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("network-namespace tests need %s (iproute2): %v", tool, err)
		}
	}
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// removeStaleNetns deletes namespaces that earlier runs of these tests left behind when they
// were killed before their cleanup ran (their process is gone).
func removeStaleNetns() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^` + netnsPrefix + `(\d+)-\d+$`)
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := re.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// subnetBase picks the first of the test's /30 subnets (10.99.base.0/30, base+1, ...) from
// the process id, so two runs at once use different addresses.
func subnetBase() int { return 100 + os.Getpid()%50*3 }

// newNetns makes namespace number n with its veth pair on 10.99.(base+n).0/30, routes
// 10.99.0.0/16 through the host (to reach the daemon on another test link) and turns IPv6
// off on the link so nothing but the private IPv4 addresses is offered.
func newNetns(t *testing.T, n int) *netns {
	t.Helper()
	pid := os.Getpid()
	sub := subnetBase() + n
	ns := &netns{
		name:   fmt.Sprintf("%s%d-%d", netnsPrefix, pid, n),
		hostIf: fmt.Sprintf("e5h%d%c", pid%100000, 'a'+n),
		nsIf:   fmt.Sprintf("e5n%d%c", pid%100000, 'a'+n),
		hostIP: fmt.Sprintf("10.99.%d.1", sub),
		nsIP:   fmt.Sprintf("10.99.%d.2", sub),
	}
	sh(t, "ip", "netns", "add", ns.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", ns.name).Run()
		_ = exec.Command("ip", "link", "del", ns.hostIf).Run() // gone with the namespace; in case it was not
	})
	sh(t, "ip", "link", "add", ns.hostIf, "type", "veth", "peer", "name", ns.nsIf, "netns", ns.name)
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+ns.hostIf+"/disable_ipv6", []byte("1"), 0o644)
	sh(t, "ip", "netns", "exec", ns.name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
	sh(t, "ip", "addr", "add", ns.hostIP+"/30", "dev", ns.hostIf)
	sh(t, "ip", "link", "set", ns.hostIf, "up")
	sh(t, "ip", "-n", ns.name, "addr", "add", ns.nsIP+"/30", "dev", ns.nsIf)
	sh(t, "ip", "-n", ns.name, "link", "set", ns.nsIf, "up")
	sh(t, "ip", "-n", ns.name, "link", "set", "lo", "up")
	sh(t, "ip", "-n", ns.name, "route", "add", "10.99.0.0/16", "via", ns.hostIP)
	return ns
}

// limit shapes what the host sends into the namespace (the SFU's media to a peer in it) to
// kbit kbit/s: an HTB class with a packet queue of about a second at that rate, as
// a slow access link has. The host kernel has no netem, so no delay is added beyond what
// the queue makes.
func (ns *netns) limit(t *testing.T, kbit int) {
	t.Helper()
	rate := fmt.Sprintf("%dkbit", kbit)
	queue := strconv.Itoa(max(10, kbit*1000/8/1200)) // packets of about 1200 bytes in 1 s
	sh(t, "tc", "qdisc", "replace", "dev", ns.hostIf, "root", "handle", "1:", "htb", "default", "1")
	sh(t, "tc", "class", "add", "dev", ns.hostIf, "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate, "burst", "6k", "cburst", "6k")
	sh(t, "tc", "qdisc", "add", "dev", ns.hostIf, "parent", "1:1", "handle", "10:", "pfifo", "limit", queue)
}

// unlimit lifts the limit: the class's rate goes to 10 Gbit/s. Deleting the qdisc instead
// would drop the packets queued in it, a burst of loss no link that gets better causes.
func (ns *netns) unlimit(t *testing.T) {
	t.Helper()
	sh(t, "tc", "class", "change", "dev", ns.hostIf, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit", "ceil", "10gbit")
}

// hostTxBytes is how many bytes the host sent into the namespace over the veth.
func (ns *netns) hostTxBytes() int64 {
	b, _ := os.ReadFile("/sys/class/net/" + ns.hostIf + "/statistics/tx_bytes")
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// tcDrops is how many packets the shaping queue dropped.
func (ns *netns) tcDrops() string {
	out, _ := exec.Command("tc", "-s", "qdisc", "show", "dev", ns.hostIf).Output()
	if m := regexp.MustCompile(`dropped (\d+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "?"
}

// browserIn starts headless Chromium inside the namespace. chromedp talks to it through its
// DevTools pipe (file descriptors 3 and 4, which `ip netns exec` passes on), so no debugging
// port is opened anywhere; the browser's only network is the veth (and its own loopback).
func browserIn(t *testing.T, ns *netns, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is needed for the browser tests (make test installs it): ", err)
	}
	wrapper := filepath.Join(t.TempDir(), "chromium-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", ns.name, chromium)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromiumOptions(t, wrapper, "MAP * ~NOTFOUND , EXCLUDE 10.99.*"), chromedp.WindowSize(640, 480))
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if _, err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium in %s: %v", ns.name, err)
	}
	return ctx
}
