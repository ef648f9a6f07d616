package ratecontrol

import (
	"context"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// step is one event of a scenario: at a time, a report, a removal, or an Update checked
// against the target (±1 %) and whether it was reported as a change.
type step struct {
	at      time.Duration
	viewer  string
	est     int
	loss    float64
	remove  bool
	update  bool
	target  int  // checked when update
	changed bool // checked when update
	why     string
}

func rep(at time.Duration, viewer string, est int, loss float64) step {
	return step{at: at, viewer: viewer, est: est, loss: loss}
}

func update(at time.Duration, target int, changed bool, why string) step {
	return step{at: at, update: true, target: target, changed: changed, why: why}
}

func TestController(t *testing.T) {
	base := Config{MinBps: 200_000, MaxBps: 4_000_000, StartBps: 1_000_000}
	const s = time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"smooth up: at most +8 % per second", base, []step{
			rep(0, "a", 3_000_000, 0),
			update(0, 1_000_000, false, "increase"),
			update(ms(100), 1_007_725, false, "increase"),
			update(ms(500), 1_039_230, true, "increase"), // 3 % reached: the encoder is told
			update(s, 1_080_000, true, "increase"),
			rep(10*s, "a", 3_000_000, 0),
			update(10*s, 1_166_400, true, "increase"), // a gap of 9 s counts as 1 s
		}},
		{"increase stops at the estimate", Config{MinBps: 200_000, MaxBps: 4_000_000, StartBps: 1_000_000, Increase: 10}, []step{
			rep(0, "a", 1_500_000, 0),
			update(0, 1_000_000, false, "increase"),
			update(s, 1_500_000, true, "increase"),
			update(2*s, 1_500_000, false, ""),
		}},
		{"fast down on a lower estimate", base, []step{
			rep(0, "a", 1_000_000, 0),
			update(0, 1_000_000, false, ""),
			rep(ms(100), "a", 600_000, 0),
			update(ms(100), 510_000, true, "estimate"),
			// The same estimate again: already below it, no second cut.
			update(ms(200), 510_000, false, "hold: after a cut"),
		}},
		{"hysteresis: small dips and rises change nothing", base, []step{
			rep(0, "a", 960_000, 0),
			update(0, 1_000_000, false, ""),
			rep(s, "a", 1_040_000, 0),
			update(2*s, 1_000_000, false, ""),
		}},
		{"fast down on loss, repeated once a second while it lasts", base, []step{
			rep(0, "a", 5_000_000, 0.15),
			update(0, 850_000, true, "loss"),
			update(ms(500), 850_000, false, "loss"),
			update(s, 722_500, true, "loss"),
			rep(ms(1100), "a", 5_000_000, 0),
			update(ms(1500), 722_500, false, "hold: after a cut"),
			update(ms(3100), 728_080, false, "increase"), // 2 s after the last cut it rises again
			update(ms(4000), 777_500, true, "increase"),
		}},
		{"moderate loss holds", base, []step{
			rep(0, "a", 3_000_000, 0.05),
			update(0, 1_000_000, false, "hold: loss"),
			update(5*s, 1_000_000, false, "hold: loss"),
		}},
		{"the worst viewer is served", base, []step{
			rep(0, "a", 3_000_000, 0),
			rep(0, "b", 800_000, 0),
			update(0, 680_000, true, "estimate"),
			step{at: s, viewer: "b", remove: true},
			update(ms(3000), 734_400, true, "increase"),
		}},
		{"a lossy viewer cuts even with a high estimate", base, []step{
			rep(0, "a", 3_000_000, 0),
			rep(0, "b", 3_000_000, 0.2),
			update(0, 850_000, true, "loss"),
		}},
		{"stale reports are forgotten", base, []step{
			rep(0, "a", 3_000_000, 0),
			rep(0, "b", 500_000, 0),
			rep(6*s, "a", 3_000_000, 0),
			update(6*s, 1_000_000, false, "increase"), // b's report is 6 s old: only a counts
		}},
		{"no viewers climbs back at the usual pace", base, []step{
			update(0, 1_000_000, false, "increase"),
			update(10*s, 1_080_000, true, "increase"), // a long gap is still one second's rise
		}},
		{"clamped to min and max", base, []step{
			rep(0, "a", 50_000, 0),
			update(0, 200_000, true, "estimate"),
			rep(ms(1500), "a", 50_000_000, 0),
			update(ms(1500), 200_000, false, "hold: after a cut"),
			update(ms(2500), 207_846, true, "increase"), // the rise counts from the end of the hold
			update(ms(3500), 224_474, true, "increase"),
		}},
		{"start above max is clamped", Config{MinBps: 100_000, MaxBps: 1_000_000, StartBps: 5_000_000}, []step{
			rep(0, "a", 2_000_000, 0),
			update(0, 1_000_000, false, ""),
		}},
		{"the last small step to max is reported once the target settles", Config{MinBps: 100_000, MaxBps: 4_000_000, StartBps: 3_900_000}, []step{
			rep(0, "a", 10_000_000, 0),
			update(0, 3_900_000, false, "increase"),
			update(s, 4_000_000, false, "increase"), // +2.6 %: below the step
			update(ms(1100), 4_000_000, true, "increase"),
			update(ms(1200), 4_000_000, false, "increase"),
		}},
		{"percentile: the lowest third is sacrificed", Config{MinBps: 200_000, MaxBps: 4_000_000, StartBps: 3_000_000, Percentile: 0.34}, []step{
			rep(0, "a", 500_000, 0.3), // its loss does not count either
			rep(0, "b", 2_000_000, 0),
			rep(0, "c", 3_000_000, 0),
			update(0, 1_700_000, true, "estimate"),
		}},
		{"loss-only viewers: loss-based control", base, []step{
			rep(0, "a", 0, 0),
			update(0, 1_000_000, false, "increase"),
			update(s, 1_080_000, true, "increase"),
			rep(s, "a", 0, 0.12),
			update(ms(1100), 918_000, true, "loss"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Unix(1700000000, 0)
			for i, st := range tc.steps {
				now := t0.Add(st.at)
				switch {
				case st.remove:
					c.Remove(st.viewer)
				case st.update:
					bps, changed := c.Update(now)
					got := c.Target()
					if math.Abs(float64(got-st.target)) > 0.01*float64(st.target) || changed != st.changed {
						t.Errorf("step %d at %v: target %d changed %v (%s); want %d changed %v", i, st.at, got, changed, c.Why(), st.target, st.changed)
					}
					if changed && bps != got {
						t.Errorf("step %d: reported %d, target %d", i, bps, got)
					}
					if st.why != "" && c.Why() != st.why {
						t.Errorf("step %d: why %q; want %q", i, c.Why(), st.why)
					}
				default:
					c.Report(st.viewer, st.est, st.loss, now)
				}
			}
		})
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{
		{}, {MinBps: 100, MaxBps: 50}, {MinBps: -1, MaxBps: 50}, {MinBps: 1, MaxBps: 2, Percentile: 1},
		{MinBps: 1, MaxBps: 2, Backoff: 1.5}, {MinBps: 1, MaxBps: 2, LossHold: 0.2, LossCut: 0.1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	c, err := New(Config{MinBps: 1, MaxBps: 2_000_000})
	if err != nil || c.Target() != 2_000_000 {
		t.Errorf("start defaults to max: %v %v", c.Target(), err)
	}
}

// TestRun drives the ticker loop in a synctest bubble: fake time, real goroutines.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Config{MinBps: 200_000, MaxBps: 4_000_000, StartBps: 2_000_000})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var applied []int
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			c.Run(ctx, 100*time.Millisecond, func(bps int) {
				mu.Lock()
				applied = append(applied, bps)
				mu.Unlock()
			})
			close(done)
		}()
		c.Report("viewer", 1_000_000, 0, time.Now())
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		mu.Lock()
		if len(applied) != 1 || applied[0] != 850_000 {
			t.Errorf("after a lower estimate: applied %v; want [850000] at once", applied)
		}
		mu.Unlock()
		// 10 s of steady reports: held 2 s, then up at most 8 %/s, told in steps of >= 3 %.
		for range 100 {
			c.Report("viewer", 1_000_000, 0, time.Now())
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		last := applied[len(applied)-1]
		t.Logf("applied %v", applied)
		if last < 940_000 || last > 1_000_000 {
			t.Errorf("after 10 s the target is %d; want it back near the 1 Mbit/s estimate, not above", last)
		}
		for i := 2; i < len(applied)-1; i++ { // the last one may be the settled target
			if r := float64(applied[i]) / float64(applied[i-1]); r < 1.03 {
				t.Errorf("step %d: %d after %d: increases below 3 %% should not be applied while rising", i, applied[i], applied[i-1])
			}
		}
	})
}
