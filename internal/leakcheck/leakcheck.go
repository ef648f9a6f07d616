// Package leakcheck fails a test that leaves goroutines behind, the way pion's
// test.CheckRoutines does: every networking test calls Check first.
package leakcheck

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Check records the goroutines running now and, when the test ends, waits up to 5 s for any
// newer ones to exit before failing with their stacks.
func Check(t testing.TB) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		var leaked []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			leaked = leaked[:0]
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok && !ignorable(stack) {
					leaked = append(leaked, stack)
				}
			}
			if len(leaked) == 0 {
				return
			}
		}
		t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	})
}

func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		id := strings.Fields(header)
		if len(id) > 1 {
			out[id[1]] = g
		}
	}
	return out
}

// ignorable are goroutines that belong to the runtime or the test framework, or are
// process-wide pools that outlive any one test.
func ignorable(stack string) bool {
	for _, s := range []string{
		"testing.(*T).Run", "testing.tRunner", "testing.runFuzzing", "testing.(*F).Fuzz",
		"created by runtime.gc", "signal.signal_recv", "leakcheck.goroutines",
		// http.DefaultClient keeps idle connections to the test's server: not the code under test.
		"net/http.(*persistConn)",
	} {
		if strings.Contains(stack, s) && !strings.Contains(stack, "edgeflux") {
			return true
		}
	}
	return false
}
