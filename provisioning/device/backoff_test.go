package device

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	lo, hi := time.Second, time.Minute
	for n, base := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60} {
		base *= time.Second
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoffDelay(lo, hi, n)
			if d < base/2 || d > base {
				t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, base/2, base)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Fatalf("attempt %d: only %d distinct delays in 200: not jittered", n, len(seen))
		}
	}
	if d := backoffDelay(lo, hi, 1000); d < hi/2 || d > hi {
		t.Fatalf("attempt 1000: %v", d)
	}
}
