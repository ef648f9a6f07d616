package vboard

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// The lines /init prints on the console around each step, and the one a guest test prints
// when the host should press the board's power button (QMP system_powerdown).
const (
	MarkerBegin          = "VBOARD-BEGIN " // VBOARD-BEGIN <name>
	MarkerEnd            = "VBOARD-END "   // VBOARD-END <name> rc=<exit status>
	MarkerDone           = "VBOARD-DONE"   // every step has run; the guest powers off next
	MarkerReadyForButton = "VBOARD-READY-FOR-BUTTON"
)

// console collects the guest's serial output as lines, copies it to a log, and wakes anyone
// waiting for a line.
type console struct {
	log io.Writer

	mu      sync.Mutex
	lines   []string
	partial []byte
	changed chan struct{} // closed and replaced whenever a line completes
	closed  bool
}

func newConsole(log io.Writer) *console {
	return &console{log: log, changed: make(chan struct{})}
}

func (c *console) Write(p []byte) (int, error) {
	if c.log != nil {
		c.log.Write(p) // the log is for people; a failing log must not stop the guest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	start, grew := 0, false
	for i, b := range p {
		if b == '\n' {
			c.partial = append(c.partial, p[start:i]...)
			c.lines = append(c.lines, strings.TrimRight(string(c.partial), "\r"))
			c.partial = c.partial[:0]
			start, grew = i+1, true
		}
	}
	c.partial = append(c.partial, p[start:]...)
	if grew {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	return len(p), nil
}

// close ends the output: the unfinished last line counts as a line, and waiters stop waiting.
func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if len(c.partial) > 0 {
		c.lines = append(c.lines, strings.TrimRight(string(c.partial), "\r"))
		c.partial = nil
	}
	c.closed = true
	close(c.changed)
}

// snapshot returns the complete lines so far.
func (c *console) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// waitFor waits until n lines contain substr. It fails when the output ends first.
func (c *console) waitFor(ctx context.Context, substr string, n int) error {
	for {
		c.mu.Lock()
		seen := 0
		for _, l := range c.lines {
			if strings.Contains(l, substr) {
				seen++
			}
		}
		changed, closed := c.changed, c.closed
		c.mu.Unlock()
		if seen >= n {
			return nil
		}
		if closed {
			return fmt.Errorf("wait for console line %d with %q: %w", n, substr, ErrExited)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for console line %d with %q: %w", n, substr, ctx.Err())
		}
	}
}

// Result is the outcome of one step of /init, read back from the console.
type Result struct {
	Name   string
	Ended  bool   // the END marker was seen: the step ran to completion
	RC     int    // its exit status, when Ended
	Output string // the console lines between its BEGIN and END markers (or the end)
}

// Results reads the steps' brackets from console lines, in the order they began, and whether
// the guest got to the end of /init (MarkerDone).
func Results(lines []string) (results []Result, done bool) {
	var cur *Result
	var out []string
	finish := func() {
		if cur != nil {
			cur.Output = strings.Join(out, "\n")
			results = append(results, *cur)
			cur, out = nil, nil
		}
	}
	for _, l := range lines {
		switch {
		case strings.Contains(l, MarkerBegin):
			finish()
			name := strings.TrimSpace(l[strings.Index(l, MarkerBegin)+len(MarkerBegin):])
			cur = &Result{Name: name}
		case cur != nil && strings.Contains(l, MarkerEnd+cur.Name+" rc="):
			rest := l[strings.Index(l, MarkerEnd+cur.Name+" rc=")+len(MarkerEnd+cur.Name+" rc="):]
			rc, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil {
				rc = -1
			}
			cur.Ended, cur.RC = true, rc
			finish()
		case strings.Contains(l, MarkerDone):
			finish()
			done = true
		case cur != nil:
			out = append(out, l)
		}
	}
	finish()
	return results, done
}

// Find returns the result of the step called name.
func Find(results []Result, name string) (Result, bool) {
	for _, r := range results {
		if r.Name == name {
			return r, true
		}
	}
	return Result{}, false
}

// tail returns the last n lines.
func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
