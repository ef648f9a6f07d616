package device

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/edgeflux/edge/internal/config"
	"github.com/edgeflux/edge/provisioning/atomicfile"
	"github.com/edgeflux/edge/provisioning/bundle"
)

// Files of the applier in the state directory.
const (
	LastGoodFile = "last-good.yaml" // the configuration in force before the newest apply
	BundlePrefix = "bundle-"        // bundle-N.json: the signed bundle configuration version N came from
	PendingFile  = "pending.json"   // an apply whose readiness is not confirmed yet
	StateFile    = "apply-state.json"
)

// header starts every configuration file the applier writes, so that the file alone says
// which bundle it is and whether it is complete:
//
//	# edge-provision: device=dev-… version=7 sha256=<hex of the rest of the file>
const headerPrefix = "# edge-provision: "

// Applied is what a configuration file says about itself.
type Applied struct {
	Device  string
	Version uint64 // 0: a file not written by the applier (the image's own configuration)
	Body    []byte // the configuration after the header
}

// ParseApplied splits a configuration file into its header and body, and checks that the body
// is complete (its SHA-256 matches the header).
func ParseApplied(data []byte) (Applied, error) {
	line, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte(headerPrefix)) {
		return Applied{Body: data}, nil
	}
	var a Applied
	var sum string
	for _, f := range strings.Fields(string(line[len(headerPrefix):])) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "device":
			a.Device = v
		case "version":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return a, fmt.Errorf("configuration header: version %q", v)
			}
			a.Version = n
		case "sha256":
			sum = v
		}
	}
	got := sha256.Sum256(rest)
	if hex.EncodeToString(got[:]) != sum {
		return a, errors.New("configuration file is incomplete: its sha256 does not match its header")
	}
	a.Body = rest
	return a, nil
}

func renderApplied(device string, version uint64, body []byte) []byte {
	sum := sha256.Sum256(body)
	h := fmt.Sprintf("%sdevice=%s version=%d sha256=%s\n", headerPrefix, device, version, hex.EncodeToString(sum[:]))
	return append([]byte(h), body...)
}

// Hooks connect the applier to edged.
type Hooks struct {
	// Activate makes edged use the configuration file now: restart it, or with live set (only
	// settings edged can change in place differ) reload it without dropping calls.
	Activate func(ctx context.Context, live bool) error
	// Ready returns nil once edged runs and is healthy with cfg, or an error when ctx ends first.
	Ready func(ctx context.Context, cfg config.Config) error
}

// Applier applies verified bundles to edged's configuration file: atomically, keeping the
// last good configuration, and rolling back when edged does not become ready.
type Applier struct {
	StateDir     string
	ConfigPath   string // edged's configuration file
	Device       string
	FleetKey     ed25519.PublicKey
	Hooks        Hooks
	ReadyTimeout time.Duration // default 60 s
	Log          *slog.Logger
}

type applyState struct {
	// FailedVersion: the newest version that edged could not run; it and older ones are not
	// tried again.
	FailedVersion uint64 `json:"failed_version"`
	LastError     string `json:"last_error,omitempty"`
}

type pending struct {
	Version uint64 `json:"version"`
}

func (a *Applier) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

func (a *Applier) path(name string) string { return filepath.Join(a.StateDir, name) }

func (a *Applier) bundlePath(version uint64) string {
	return a.path(fmt.Sprintf("%s%d.json", BundlePrefix, version))
}

// pruneBundles keeps only the bundle of the configuration in force (and removes temp files a
// killed writer left), so that the state directory describes one configuration.
func (a *Applier) pruneBundles() {
	cur, _ := a.Current()
	keep := filepath.Base(a.bundlePath(cur.Version))
	entries, _ := os.ReadDir(a.StateDir)
	for _, e := range entries {
		n := e.Name()
		if (strings.HasPrefix(n, BundlePrefix) || strings.HasPrefix(n, "."+BundlePrefix)) && n != keep {
			os.Remove(a.path(n))
		}
	}
}

// CurrentBundle returns the signed bundle the configuration in force came from (nil for a
// configuration the applier did not write).
func (a *Applier) CurrentBundle() []byte {
	cur, _ := a.Current()
	b, _ := os.ReadFile(a.bundlePath(cur.Version))
	return b
}

// Current returns the configuration in force (version 0 when the applier never wrote one).
func (a *Applier) Current() (Applied, error) {
	data, err := os.ReadFile(a.ConfigPath)
	if errors.Is(err, os.ErrNotExist) {
		return Applied{}, nil
	} else if err != nil {
		return Applied{}, fmt.Errorf("read %s: %w", a.ConfigPath, err)
	}
	return ParseApplied(data)
}

func (a *Applier) state() applyState {
	var s applyState
	if data, err := os.ReadFile(a.path(StateFile)); err == nil {
		json.Unmarshal(data, &s)
	}
	return s
}

func (a *Applier) saveState(s applyState) error {
	data, _ := json.Marshal(s)
	return atomicfile.Write(a.path(StateFile), data, 0o600)
}

// Floor is the version a new bundle must exceed: the applied one, or a newer one that failed.
func (a *Applier) Floor() uint64 {
	cur, _ := a.Current()
	return max(cur.Version, a.state().FailedVersion)
}

// LastError is the last apply failure, for the heartbeat.
func (a *Applier) LastError() string { return a.state().LastError }

// Check verifies a bundle and the configuration in it without changing anything: signature
// with the fleet key, this device, newer than the floor, and a configuration edged accepts.
func (a *Applier) Check(data []byte) (*bundle.Bundle, config.Config, error) {
	b, err := bundle.Verify(data, a.FleetKey, a.Device, a.Floor())
	if err != nil {
		return nil, config.Config{}, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	cfg, err := config.Parse([]byte(b.Config), fmt.Sprintf("bundle version %d", b.Version))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return nil, config.Config{}, fmt.Errorf("%w: edged would refuse the configuration of bundle version %d: %w", ErrRejected, b.Version, err)
	}
	return b, cfg, nil
}

// Write puts a verified bundle's configuration in place, crash-safely: the configuration in
// force is kept as last good, a pending marker records the apply, then the new file replaces
// the old one in a single rename. A power cut at any point leaves either the old or the new
// file, complete.
func (a *Applier) Write(data []byte, b *bundle.Bundle) error {
	atomicfile.CleanTemps(filepath.Dir(a.ConfigPath), filepath.Base(a.ConfigPath))
	if old, err := os.ReadFile(a.ConfigPath); err == nil {
		if _, err := ParseApplied(old); err == nil {
			if err := atomicfile.Write(a.path(LastGoodFile), old, 0o600); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	p, _ := json.Marshal(pending{Version: b.Version})
	if err := atomicfile.Write(a.path(PendingFile), p, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(a.bundlePath(b.Version), data, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(a.ConfigPath, renderApplied(b.Device, b.Version, []byte(b.Config)), 0o644)
}

// Apply checks a bundle, writes it, makes edged use it and waits for edged to be ready; if
// edged is not, the last good configuration goes back and edged is activated again with it.
// A refused bundle changes nothing.
func (a *Applier) Apply(ctx context.Context, data []byte) (uint64, error) {
	b, cfg, err := a.Check(data)
	if err != nil {
		return 0, err
	}
	old, _ := a.Current()
	live := false
	if oldCfg, err := config.Parse(old.Body, "current"); err == nil && old.Version > 0 {
		live = LiveApplicable(oldCfg, cfg)
	}
	if err := a.Write(data, b); err != nil {
		return 0, fmt.Errorf("write configuration version %d: %w", b.Version, err)
	}
	a.log().Info("configuration written", "version", b.Version, "previous", old.Version, "live", live)
	if err := a.confirm(ctx, b.Version, cfg, live); err != nil {
		return 0, err
	}
	return b.Version, nil
}

// confirm activates the written configuration and waits for edged; it rolls back on failure.
func (a *Applier) confirm(ctx context.Context, version uint64, cfg config.Config, live bool) error {
	err := a.activateAndWait(ctx, cfg, live)
	if err == nil {
		atomicfile.Remove(a.path(PendingFile))
		a.pruneBundles()
		st := a.state()
		st.LastError = ""
		a.saveState(st)
		a.log().Info("configuration applied; edged is ready", "version", version)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: Recover finishes this on the next start
	}
	reason := fmt.Errorf("%w (version %d): %w", ErrNotReady, version, err)
	a.log().Error("rolling back to the last good configuration", "version", version, "err", err)
	if rbErr := a.rollback(ctx); rbErr != nil {
		reason = fmt.Errorf("%w; rollback: %w", reason, rbErr)
	}
	a.saveState(applyState{FailedVersion: max(version, a.state().FailedVersion), LastError: reason.Error()})
	atomicfile.Remove(a.path(PendingFile))
	a.pruneBundles()
	return reason
}

func (a *Applier) activateAndWait(ctx context.Context, cfg config.Config, live bool) error {
	if a.Hooks.Activate != nil {
		if err := a.Hooks.Activate(ctx, live); err != nil {
			return fmt.Errorf("activate: %w", err)
		}
	}
	if a.Hooks.Ready == nil {
		return nil
	}
	timeout := a.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return a.Hooks.Ready(rctx, cfg)
}

// defaultsFile is what rollback writes when there was no configuration before the failed one:
// an empty document, on which edged runs with its built-in defaults (a missing file would
// stop it).
const defaultsFile = "# written by edge-provision: no earlier configuration to roll back to; edged's defaults apply\n"

// rollback puts the last good configuration back (or edged's defaults, when there was none)
// and activates it.
func (a *Applier) rollback(ctx context.Context) error {
	good, err := os.ReadFile(a.path(LastGoodFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := atomicfile.Write(a.ConfigPath, []byte(defaultsFile), 0o644); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if err := atomicfile.Write(a.ConfigPath, good, 0o644); err != nil {
			return err
		}
	}
	cur, _ := a.Current()
	cfg, err := config.Parse(cur.Body, "last good")
	if err != nil {
		return err
	}
	return a.activateAndWait(ctx, cfg, false)
}

// Recover finishes an apply that a restart or power cut interrupted: temp files go, and a
// configuration written but never confirmed is confirmed now or rolled back.
func (a *Applier) Recover(ctx context.Context) error {
	atomicfile.CleanTemps(filepath.Dir(a.ConfigPath), filepath.Base(a.ConfigPath))
	atomicfile.CleanTemps(a.StateDir, LastGoodFile)
	defer a.pruneBundles()
	data, err := os.ReadFile(a.path(PendingFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var p pending
	json.Unmarshal(data, &p)
	cur, err := a.Current()
	if err != nil || cur.Version != p.Version {
		// The cut came before the new file replaced the old one: the old one is in force.
		return atomicfile.Remove(a.path(PendingFile))
	}
	cfg, err := config.Parse(cur.Body, a.ConfigPath)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		a.log().Error("configuration in force is invalid; rolling back", "version", p.Version, "err", err)
		rbErr := a.rollback(ctx)
		a.saveState(applyState{FailedVersion: max(p.Version, a.state().FailedVersion), LastError: err.Error()})
		if rbErr != nil {
			return rbErr
		}
		return atomicfile.Remove(a.path(PendingFile))
	}
	a.log().Info("confirming a configuration applied before a restart", "version", p.Version)
	return a.confirm(ctx, p.Version, cfg, false)
}

// LiveApplicable reports whether old and new differ only in settings edged can change
// without a restart (and so without dropping calls): log level, encoder bitrates and keyframe
// interval, and the viewer limit.
func LiveApplicable(old, new config.Config) bool {
	o, n := old, new
	o.Log.Level, n.Log.Level = "", ""
	o.Encoder.BitrateKbps, n.Encoder.BitrateKbps = 0, 0
	o.Encoder.MinBitrateKbps, n.Encoder.MinBitrateKbps = 0, 0
	o.Encoder.KeyframeInterval, n.Encoder.KeyframeInterval = 0, 0
	o.WebRTC.MaxViewers, n.WebRTC.MaxViewers = 0, 0
	return reflect.DeepEqual(o, n)
}
