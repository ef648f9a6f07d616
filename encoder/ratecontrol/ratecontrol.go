// Package ratecontrol is the one place that turns what the viewers' congestion controllers
// estimate (REMB or TWCC available bitrate, and loss) into the encoder's target bitrate.
//
// The stream is single-layer: every viewer gets the same bitrate, so the target must be
// one that the viewers can take. By default the controller serves the worst of them (the
// minimum estimate, Config.Percentile 0): no viewer is fed more than its path carries, at the
// cost that one viewer on bad Wi-Fi lowers the picture for the room. A percentile above 0
// sacrifices that fraction of the viewers (they lose packets and recover through NACK and
// keyframes) for the others' quality; simulcast layers, when they come, make that choice
// unnecessary.
//
// The target moves asymmetrically, as congestion control wants:
//   - fast down: when the estimate falls below the target (by more than the hysteresis
//     band) or a viewer loses more than 10 % of packets, the target drops at once to 0.85 x
//     the estimate (a loss-triggered cut repeats at most once per second while the loss lasts);
//   - smooth up: otherwise it rises toward the estimate by at most 8 % per second, never
//     above the estimate, and not at all for 2 s after a cut or while loss is above 2 %;
//   - hysteresis: estimates within ±5 % of the target change nothing, and Update reports an
//     increase once it adds up to 3 % (or the target stops rising), so the encoder is not
//     retuned on every report.
//
// A viewer that reports loss but no estimate is served by loss alone, the loss-based half of
// GCC: up 8 %/s below 2 % loss, hold up to 10 %, cut above.
//
// Everything is clamped to [MinBps, MaxBps]. Keyframe requests are not limited here: the
// pipeline already forces at most one IDR per 500 ms.
package ratecontrol

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Config tunes a Controller. Zero fields take the defaults in brackets.
type Config struct {
	MinBps, MaxBps int // required: 0 < MinBps <= MaxBps
	StartBps       int // target before any report [MaxBps]
	// Percentile of the viewers' estimates the target serves: 0 is the minimum [0].
	Percentile float64
	// Increase is the largest relative rise per second [0.08].
	Increase float64
	// Backoff is the fraction of the estimate a cut goes to [0.85].
	Backoff float64
	// LossCut is the loss fraction above which the target is cut [0.10]; LossHold the one
	// above which it stops rising [0.02].
	LossCut, LossHold float64
	// Hysteresis is the relative band around the target in which estimates change nothing
	// [0.05].
	Hysteresis float64
	// MinStep is the smallest relative increase Update reports [0.03] while the target is
	// still rising; decreases are always reported.
	MinStep float64
	// HoldAfterCut is how long the target does not rise after a cut [2 s].
	HoldAfterCut time.Duration
	// LossCutInterval is the shortest time between two loss-triggered cuts [1 s].
	LossCutInterval time.Duration
	// StaleAfter drops a viewer's report this old [5 s].
	StaleAfter time.Duration
}

func (c *Config) defaults() error {
	if c.MinBps <= 0 || c.MaxBps < c.MinBps {
		return fmt.Errorf("ratecontrol: need 0 < MinBps <= MaxBps, got %d and %d", c.MinBps, c.MaxBps)
	}
	if c.StartBps == 0 {
		c.StartBps = c.MaxBps
	}
	if c.Percentile < 0 || c.Percentile >= 1 {
		return fmt.Errorf("ratecontrol: Percentile %v outside [0, 1)", c.Percentile)
	}
	set := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.Increase, 0.08)
	set(&c.Backoff, 0.85)
	set(&c.LossCut, 0.10)
	set(&c.LossHold, 0.02)
	set(&c.Hysteresis, 0.05)
	set(&c.MinStep, 0.03)
	if c.Backoff <= 0 || c.Backoff >= 1 || c.Increase < 0 || c.Hysteresis < 0 || c.LossHold > c.LossCut {
		return errors.New("ratecontrol: need 0 < Backoff < 1, Increase >= 0, Hysteresis >= 0, LossHold <= LossCut")
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setD(&c.HoldAfterCut, 2*time.Second)
	setD(&c.LossCutInterval, time.Second)
	setD(&c.StaleAfter, 5*time.Second)
	return nil
}

type report struct {
	estimate int     // bit/s; 0 when the viewer only reports loss
	loss     float64 // fraction of packets lost, 0..1
	at       time.Time
}

// Controller holds the viewers' latest reports and the target. It is safe for concurrent
// use: reports come from each viewer's RTCP goroutine, Update from a ticker.
type Controller struct {
	mu      sync.Mutex
	cfg     Config
	viewers map[string]report
	target  float64
	applied int       // what Update last reported
	last    time.Time // of the last Update
	cut     time.Time // of the last cut
	lossCut time.Time // of the last loss-triggered cut
	why     string
}

// New returns a Controller at cfg.StartBps.
func New(cfg Config) (*Controller, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	start := float64(min(max(cfg.StartBps, cfg.MinBps), cfg.MaxBps))
	return &Controller{cfg: cfg, viewers: map[string]report{}, target: start, applied: int(start), why: "start"}, nil
}

// SetLimits changes the bitrate range (a configuration reload); the target moves into it.
func (c *Controller) SetLimits(minBps, maxBps int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := c.cfg
	cfg.MinBps, cfg.MaxBps = minBps, maxBps
	if err := cfg.defaults(); err != nil {
		return err
	}
	c.cfg = cfg
	c.target = min(max(c.target, float64(cfg.MinBps)), float64(cfg.MaxBps))
	return nil
}

// Report records a viewer's latest estimate (bit/s, 0 if it has none) and loss fraction.
func (c *Controller) Report(viewer string, estimateBps int, loss float64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.viewers[viewer] = report{estimate: max(estimateBps, 0), loss: min(max(loss, 0), 1), at: now}
}

// Remove forgets a viewer that left.
func (c *Controller) Remove(viewer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.viewers, viewer)
}

// Target is the current target in bit/s.
func (c *Controller) Target() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.target)
}

// Why says what moved the target last ("start", "estimate", "loss", "increase", "hold").
func (c *Controller) Why() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.why
}

// aggregate returns the estimate the target serves and the worst loss among the viewers it
// serves; ok is false when no viewer has a fresh report.
func (c *Controller) aggregate(now time.Time) (est float64, loss float64, ok bool) {
	type v struct {
		est  int
		loss float64
	}
	var vs []v
	for id, r := range c.viewers {
		if now.Sub(r.at) > c.cfg.StaleAfter {
			delete(c.viewers, id)
			continue
		}
		vs = append(vs, v{r.estimate, r.loss})
	}
	if len(vs) == 0 {
		return 0, 0, false
	}
	// Viewers without an estimate count for loss only; sort the rest by estimate and skip
	// the lowest Percentile of them.
	slices.SortFunc(vs, func(a, b v) int { return a.est - b.est })
	first := slices.IndexFunc(vs, func(x v) bool { return x.est > 0 })
	if first < 0 {
		est = math.Inf(1)
		first = len(vs)
	} else {
		n := len(vs) - first
		first += int(c.cfg.Percentile * float64(n))
		est = float64(vs[first].est)
	}
	for i, x := range vs {
		if x.est == 0 || i >= first {
			loss = max(loss, x.loss)
		}
	}
	return est, loss, true
}

// Update moves the target for the time since the last call and returns it, with changed
// true when the encoder should be told: at once for a decrease, for an increase once it
// adds up to MinStep. Call it on a short ticker (100 to 250 ms) or after reports.
func (c *Controller) Update(now time.Time) (bps int, changed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The rise counts from the last Update or the end of the hold after a cut, whichever is
	// later, and never more than a second: a long gap is not a licence to jump.
	from := c.last
	if end := c.cut.Add(c.cfg.HoldAfterCut); !c.cut.IsZero() && end.After(from) {
		from = end
	}
	dt := 0.0
	if !c.last.IsZero() {
		dt = min(max(now.Sub(from).Seconds(), 0), 1)
	}
	c.last = now
	cfg := c.cfg
	est, loss, ok := c.aggregate(now)
	if !ok {
		// Nobody reports congestion (no viewers, or none that estimate): nothing argues for
		// a low bitrate, so climb back at the usual pace.
		est, loss = math.Inf(1), 0
	}
	prev := c.target
	t := prev
	switch {
	case loss > cfg.LossCut:
		if c.lossCut.IsZero() || now.Sub(c.lossCut) >= cfg.LossCutInterval {
			t = cfg.Backoff * min(est, t)
			c.cut, c.lossCut, c.why = now, now, "loss"
		}
	case est < t*(1-cfg.Hysteresis):
		t = cfg.Backoff * est
		c.cut, c.why = now, "estimate"
	case loss > cfg.LossHold:
		c.why = "hold: loss"
	case !c.cut.IsZero() && now.Sub(c.cut) < cfg.HoldAfterCut:
		c.why = "hold: after a cut"
	case est > t*(1+cfg.Hysteresis):
		t = min(est, t*math.Pow(1+cfg.Increase, dt))
		c.why = "increase"
	}
	t = min(max(t, float64(cfg.MinBps)), float64(cfg.MaxBps))
	c.target = t
	bps = int(t)
	// Decreases are applied at once, increases in steps of MinStep, and a target that has
	// stopped moving is applied whatever the step, so the encoder ends where the target is.
	if bps < c.applied || float64(bps) >= float64(c.applied)*(1+cfg.MinStep) || (bps != c.applied && t == prev) {
		c.applied = bps
		return bps, true
	}
	return c.applied, false
}

// Run calls Update every interval until ctx is done and hands each change to apply (the
// pipeline's SetBitrate).
func (c *Controller) Run(ctx context.Context, every time.Duration, apply func(bps int)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if bps, changed := c.Update(now); changed {
				apply(bps)
			}
		}
	}
}
