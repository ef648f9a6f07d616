package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestJournalLinesCarryPriorityAndNoTimestamp(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "debug", "auto", []string{"JOURNAL_STREAM=8:1234"})
	if err != nil {
		t.Fatal(err)
	}
	log.With("component", "camera").Error("camera lost", "device", "/dev/video0")
	log.Info("serving")
	log.Debug("detail")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{`<3>msg="camera lost" component=camera device=/dev/video0`, `<6>msg=serving`, `<7>msg=detail`}
	if len(lines) != len(want) {
		t.Fatalf("got %q", lines)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %q; want %q", i, lines[i], want[i])
		}
	}
}

func TestTextOutsideSystemdAndBadSettings(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "warn", "auto", nil)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "time=") || !strings.Contains(out, "level=WARN") {
		t.Errorf("text log: %q", out)
	}
	if _, err := New(&buf, "loud", "text", nil); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := New(&buf, "info", "xml", nil); err == nil {
		t.Error("bad format accepted")
	}
}
