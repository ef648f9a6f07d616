package gpio

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/warthog618/go-gpiocdev"
)

// TestNewWithoutGPIOChips runs on machines without GPIO (CI, this build host): the real
// character device layer reports it in one line, and the Controller does nothing.
func TestNewWithoutGPIOChips(t *testing.T) {
	if chips := gpiocdev.Chips(); len(chips) > 0 {
		t.Skipf("this machine has GPIO chips %v", chips)
	}
	var log logBuf
	c, err := New(fullConfig(), nil, log.logger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	c.SetState(StateStreaming)
	if err := c.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	lines := log.lines()
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "no GPIO chips (/dev/gpiochip*)") {
		t.Errorf("want one warning about missing GPIO chips, got:\n%s", strings.Join(lines, "\n"))
	}
	if c.Active() {
		t.Error("Active() without GPIO")
	}
}

func TestNewNothingConfigured(t *testing.T) {
	var log logBuf
	c, err := New(Config{Debounce: 30 * time.Millisecond, LongPress: 10 * time.Second}, nil, log.logger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if lines := log.lines(); len(lines) != 1 || !strings.Contains(lines[0], "level=DEBUG") {
		t.Errorf("want one debug line, got:\n%s", strings.Join(lines, "\n"))
	}
}

func TestCdevMissingChip(t *testing.T) {
	_, _, err := cdev{}.find(lineSpec{chip: "gpiochip999", offset: 1})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/dev/gpiochip999") {
		t.Errorf("find(gpiochip999:1) = %v, want a not-exist error naming /dev/gpiochip999", err)
	}
}
