//go:build !linux

package gpio

import (
	"errors"
	"strings"
	"testing"
)

func TestNewNotLinux(t *testing.T) {
	var log logBuf
	c, err := New(fullConfig(), nil, log.logger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if lines := log.lines(); len(lines) != 1 || !strings.Contains(lines[0], "needs Linux") {
		t.Errorf("want one line saying GPIO needs Linux, got:\n%s", strings.Join(lines, "\n"))
	}
	if _, _, err := (cdev{}).input(lineSpec{name: "X"}, inputOptions{}, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("input = %v, want errors.ErrUnsupported", err)
	}
}
