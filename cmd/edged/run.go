package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/device/camera"
	"github.com/edgeflux/edge/device/gpio"
	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/edge"
	"github.com/edgeflux/edge/edge/sfu"
	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/openh264"
	"github.com/edgeflux/edge/encoder/probe"
	"github.com/edgeflux/edge/encoder/ratecontrol"
	"github.com/edgeflux/edge/encoder/v4l2m2m"
	"github.com/edgeflux/edge/internal/config"
	"github.com/edgeflux/edge/internal/logging"
	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/pipeline"
	"github.com/edgeflux/edge/internal/sdnotify"
	"github.com/edgeflux/edge/internal/token"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// shutdownGrace bounds how long a clean shutdown may take before run gives up waiting.
const shutdownGrace = 2 * time.Second

// runHooks let tests observe and steer a daemon they run in-process; main passes nil.
type runHooks struct {
	started func(httpAddr string) // called once edged serves
	source  pipeline.Source       // replaces the configured camera
}

// run is the composition root: configuration, then camera -> encoder -> edge, then systemd.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string, hooks *runHooks) error {
	if hooks == nil {
		hooks = &runHooks{}
	}
	cfg, mode, err := loadConfig(args, stdout, environ)
	if err != nil || mode == modeExit {
		return err
	}
	logLevel := new(slog.LevelVar)
	if err := logLevel.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	log, err := logging.NewLeveled(stderr, logLevel, cfg.Log.Format, environ)
	if err != nil {
		return err
	}

	secret, secretEphemeral, err := loadSecret(cfg.Auth, environ)
	if err != nil {
		return err
	}

	if mode == modeProbe {
		return printProbe(stdout, cfg, log)
	}
	cam, err := openSource(cfg.Camera, log)
	if err != nil {
		return err
	}
	if hooks.source != nil {
		cam.Source, cam.name = hooks.source, "test"
	}
	src, srcName, w, h, fps := cam.Source, cam.name, cam.width, cam.height, cam.fps
	enc, why, err := openEncoder(cfg.Encoder, cam, log)
	if err != nil {
		return err
	}
	defer enc.Close()
	log.Info("encoder chosen", "encoder", enc.Name(), "reason", why,
		"size", fmt.Sprintf("%dx%d", w, h), "fps", fps, "bitrate_kbps", cfg.Encoder.BitrateKbps)

	// Simulcast: the camera is encoded at up to three sizes (encoder.layers); cameraTrack hands
	// each layer to the SFU track layer of the same rid.
	lay, err := openLayers(cfg.Encoder, cam, enc, log)
	if err != nil {
		return err
	}
	defer lay.Close()
	pipe := pipeline.New(pipeline.Config{Source: src, Layers: lay.configs, Log: log.With("component", "pipeline")})
	track := cameraTrack(pipe, w, h)

	// Viewers' bandwidth estimates and loss set the encoder's bitrate, between the floor and
	// the configured bitrate.
	rate, err := ratecontrol.New(ratecontrol.Config{
		MinBps: cfg.Encoder.MinBitrateKbps * 1000, MaxBps: cfg.Encoder.BitrateKbps * 1000})
	if err != nil {
		return fmt.Errorf("rate control: %w", err)
	}

	relay, err := startRelay(cfg, secret, log)
	if err != nil {
		return err
	}
	defer relay.Close()

	var srv *edge.Server
	status := func() edge.StreamStatus {
		ps := pipe.Status()
		st := edge.StreamStatus{
			Live: ps.Live, Starting: ps.Starting, Privacy: ps.Privacy, InCall: !ps.Paused, Source: srcName, Encoder: enc.Name(), Width: w, Height: h,
			FPS: ps.FPS, BitrateKbps: ps.BitrateBps / 1000, TargetKbps: float64(rate.Target()) / 1000,
		}
		if ps.Err != nil {
			st.Error = ps.Err.Error()
		}
		return st
	}
	srv, err = edge.New(edge.Config{
		Secret: secret, TrustLoopback: cfg.Auth.TrustLoopback,
		UDPPort: cfg.WebRTC.UDPPort, Interfaces: cfg.WebRTC.Interfaces, IncludeLoopback: cfg.WebRTC.IncludeLoopback,
		MDNS: cfg.WebRTC.MDNS, NAT1To1IPs: cfg.WebRTC.NAT1To1IPs, MaxViewers: cfg.WebRTC.MaxViewers,
		DefaultRoom: cfg.WebRTC.DefaultRoom, MaxParticipants: cfg.WebRTC.MaxParticipants,
		ICEServers: relay.iceServers, TURNStats: relay.stats,
		Status:     status,
		SetPrivacy: func(on bool) { setPrivacy(pipe, log, on) },
		SetInCall:  func(joined bool) { setInCall(pipe, log, joined) },
		ViewerFeedback: func(viewer string, estimateBps int, loss float64) {
			rate.Report(viewer, estimateBps, loss, time.Now())
		},
		ViewerLeft: rate.Remove,
	}, log.With("component", "edge"))
	if err != nil {
		return err
	}
	srv.PublishCamera(track)

	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen on %s: %w", cfg.HTTP.Listen, err)
	}
	url := pageURL(ln.Addr())
	if secretEphemeral {
		log.Info("no token secret configured: made one for this run; open the page with this link", "url", url+"#token="+operatorToken(secret))
	}
	log.Info("edged serving", "version", version, "url", url, "source", srcName, "webrtc_udp_port", cfg.WebRTC.UDPPort)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The pipeline and the HTTP server run until ctx ends; either ending first ends both.
	done := make(chan error, 2)
	go func() { done <- pipe.Run(ctx) }()
	go func() { done <- srv.Serve(ctx, ln) }()
	var helpers sync.WaitGroup
	helpers.Go(func() {
		sdnotify.Watchdog(ctx, log, func() (bool, string) { return flowing(pipe.LastProgress(), fps) })
	})
	helpers.Go(func() { reportStatus(ctx, status, srv.Viewers) })
	helpers.Go(func() { rate.Run(ctx, 200*time.Millisecond, pipe.SetBitrate) })

	// Buttons work the same switches as the API; the LEDs follow the status.
	resetRequested := make(chan struct{}, 1)
	buttons, err := gpio.New(gpio.Config(cfg.GPIO), gpio.ActionFuncs{
		OnTogglePrivacy: func() { setPrivacy(pipe, log, !pipe.Privacy()) },
		OnToggleCall:    func() { setInCall(pipe, log, pipe.Paused()) },
		OnFactoryReset: func() {
			select {
			case resetRequested <- struct{}{}:
			default:
			}
		},
	}, log.With("component", "gpio"))
	if err != nil {
		return err // Validate checked the lines; this is a bug, not bad input
	}
	helpers.Go(func() { _ = buttons.Run(ctx) })
	helpers.Go(func() { showState(ctx, buttons, status, srv.Viewers) })
	sdnotify.Ready("starting " + srcName)
	if hooks.started != nil {
		hooks.started(ln.Addr().String())
	}

	// SIGHUP (systemctl reload) re-reads the configuration and applies what can change
	// without dropping a call.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	live := liveSettings{logLevel: logLevel, rate: rate, srv: srv}

	// The first goroutine to end (or a signal) ends them all.
	var firstErr error
	running := 2
wait:
	for {
		select {
		case firstErr = <-done:
			running--
			break wait
		case <-resetRequested:
			firstErr = factoryReset(environ, log)
			break wait
		case <-hup:
			cfg = reload(cfg, args, environ, live, log)
		case <-ctx.Done():
			break wait
		}
	}
	sdnotify.Stopping()
	log.Info("shutting down")
	cancel()
	stopped := make(chan struct{})
	go func() {
		srv.Close()
		for range running {
			<-done
		}
		buttons.Close()
		helpers.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		log.Warn("shutdown grace period passed; exiting anyway", "grace", shutdownGrace)
	}
	return firstErr
}

// errFactoryReset ends edged after a reset, with a non-zero status so systemd starts it again
// on the wiped state.
var errFactoryReset = errors.New("factory reset done; exiting so that systemd restarts edged")

// factoryReset wipes what the appliance learned since it was flashed: everything in its state
// directory (systemd's StateDirectory=, given in STATE_DIRECTORY). The configuration under
// /etc belongs to the image and stays.
func factoryReset(environ []string, log *slog.Logger) error {
	log.Warn("factory reset: the reset button was held")
	dir := envValue(environ, "STATE_DIRECTORY")
	if dir == "" {
		log.Warn("factory reset: no STATE_DIRECTORY (not running under systemd); nothing to wipe")
		return errFactoryReset
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("factory reset: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("factory reset: %w", err)
		}
	}
	log.Warn("factory reset: state wiped", "dir", dir, "entries", len(entries))
	return errFactoryReset
}

// showState keeps the LEDs in step with the appliance: error beats muted beats streaming
// beats ready (a reset in progress is set by the buttons themselves and stays).
func showState(ctx context.Context, leds *gpio.Controller, status func() edge.StreamStatus, viewers func() int) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if leds.State() != gpio.StateResetting {
			st := status()
			switch {
			case !st.Live && !st.Starting && st.InCall:
				leds.SetState(gpio.StateError)
			case st.Privacy:
				leds.SetState(gpio.StateMuted)
			case viewers() > 0 && st.Live:
				leds.SetState(gpio.StateStreaming)
			case st.Live || !st.InCall:
				leds.SetState(gpio.StateReady)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setPrivacy and setInCall are the appliance's two switches, for buttons and the API alike.
func setPrivacy(pipe *pipeline.Pipeline, log *slog.Logger, on bool) {
	if pipe.Privacy() != on {
		log.Info("privacy mute", "on", on)
	}
	pipe.SetPrivacy(on)
}

func setInCall(pipe *pipeline.Pipeline, log *slog.Logger, joined bool) {
	if pipe.Paused() == joined {
		log.Info("call", "joined", joined)
	}
	pipe.SetPaused(!joined)
}

type runMode int

const (
	modeRun   runMode = iota
	modeProbe         // print the cameras and encoders found, and the choice
	modeExit
)

// loadConfig reads defaults, the file, the environment and then the flags, in that order.
func loadConfig(args []string, stdout io.Writer, environ []string) (config.Config, runMode, error) {
	fset := flag.NewFlagSet("edged", flag.ContinueOnError)
	fset.SetOutput(stdout)
	path := fset.String("config", envValue(environ, config.EnvConfigPath), "configuration file (YAML); env EDGED_CONFIG")
	check := fset.Bool("check-config", false, "validate the configuration and exit")
	probeOnly := fset.Bool("probe", false, "print the cameras and encoders found, and which would be used, then exit")
	showVersion := fset.Bool("version", false, "print the version and exit")
	listen := fset.String("listen", "", "HTTP listen address, overrides http.listen")
	device := fset.String("camera", "", `camera device, "auto" or "synthetic", overrides camera.device`)
	level := fset.String("log-level", "", "debug, info, warn or error, overrides log.level")
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, modeExit, nil
		}
		return config.Config{}, modeExit, err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "edged", version)
		return config.Config{}, modeExit, nil
	}
	cfg, err := config.Load(*path, environ)
	if err != nil {
		return cfg, modeExit, err
	}
	fset.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.HTTP.Listen = *listen
		case "camera":
			cfg.Camera.Device = *device
		case "log-level":
			cfg.Log.Level = *level
		}
	})
	if err := cfg.Validate(); err != nil {
		return cfg, modeExit, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if *check {
		fmt.Fprintln(stdout, "configuration OK")
		return cfg, modeExit, nil
	}
	if *probeOnly {
		return cfg, modeProbe, nil
	}
	return cfg, modeRun, nil
}

// source is the chosen camera and the picture it delivers.
type source struct {
	pipeline.Source
	name          string
	format        media.PixelFormat
	width, height int
	fps           int
}

// openSource picks the camera: a V4L2 device when one is configured or found, otherwise the
// synthetic test pattern.
func openSource(c config.Camera, log *slog.Logger) (source, error) {
	device := c.Device
	if device == "auto" {
		found := camera.Discover()
		if len(found) == 0 {
			log.Info("no V4L2 camera found; using the synthetic test pattern")
			device = "synthetic"
		} else {
			device = found[0]
			log.Info("camera found", "device", device, "all", found)
		}
	}
	if device == "synthetic" {
		tp, err := testpattern.New(testpattern.Config{Width: c.Width, Height: c.Height, FPS: c.FPS})
		if err != nil {
			return source{}, err
		}
		return source{tp, "synthetic", media.PixelFormatI420, c.Width, c.Height, c.FPS}, nil
	}
	camCfg := camera.Config{Device: device, Format: c.Format, Width: c.Width, Height: c.Height, FPS: c.FPS}
	// The source opens the device for every run of the pipeline and closes it after, so the
	// pipeline's retry brings back an unplugged and replugged camera, or a wedged stream.
	cam := camera.NewSource(camCfg, log.With("component", "camera"))
	m, err := cam.Probe()
	if err != nil {
		// Serve anyway: viewers are told the stream is down, and the pipeline keeps trying
		// the camera, so plugging it in later needs no restart.
		log.Error("camera unavailable; will keep trying", "device", device, "err", err)
		return source{cam, device, media.PixelFormatUnknown, c.Width, c.Height, c.FPS}, nil
	}
	return source{cam, device, m.Format, m.Width, m.Height, m.FPS}, nil
}

// openEncoder probes the machine's memory-to-memory devices and opens the hardware H.264
// encoder that takes the camera's pictures, or the software encoder when there is none (or
// when the hardware one fails to open). It says which, and why.
func openEncoder(c config.Encoder, src source, log *slog.Logger) (encoder.Encoder, string, error) {
	ecfg := encoder.Config{Width: src.width, Height: src.height, FPS: src.fps,
		BitrateBps: c.BitrateKbps * 1000, KeyframeInterval: c.KeyframeInterval}
	devices, err := probe.Discover()
	if err != nil {
		log.Warn("probing for hardware encoders failed", "err", err)
	}
	choice, reason := probe.Choose(src.format, src.width, src.height, devices, c.Backend)
	switch choice.Backend {
	case probe.BackendNone:
		return nil, "", fmt.Errorf("encoder: %s", reason)
	case probe.BackendHardware:
		enc, err := v4l2m2m.New(ecfg, v4l2m2m.Options{Device: choice.Device, InputFormat: src.format,
			Log: log.With("component", "encoder")})
		if err == nil {
			return enc, reason, nil
		}
		log.Error("hardware encoder failed to open; using the software encoder", "device", choice.Device, "err", err)
		reason = "hardware encoder " + choice.Device + " failed to open: " + err.Error()
	}
	// Opened once now, so a configuration it cannot encode fails at start, and then only
	// while someone watches: an appliance between calls holds none of its memory.
	enc, err := openh264.New(ecfg)
	if err != nil {
		return nil, "", fmt.Errorf("encoder: %w", err)
	}
	_ = enc.Close()
	return encoder.NewLazy(openh264.Name, idleEncoder, func() (encoder.Encoder, error) { return openh264.New(ecfg) }), reason, nil
}

// printProbe is edged --probe: the cameras and encoders this machine has, and the choice.
func printProbe(w io.Writer, cfg config.Config, log *slog.Logger) error {
	devices, err := probe.Discover()
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	cameras, encoders := probe.Split(devices)
	src, err := openSource(cfg.Camera, log)
	if err != nil {
		return err
	}
	choice, _ := probe.Choose(src.format, src.width, src.height, devices, cfg.Encoder.Backend)
	if err := probe.WriteTable(w, cameras, encoders, choice); err != nil {
		return err
	}
	sizes := probeLayerSizes(cfg, src.width, src.height)
	return probe.WriteScalers(w, probe.Scalers(devices), probe.ChooseScaler(src.format, src.width, src.height, sizes, devices))
}

// flowing is the watchdog's health check: the pipeline made progress within the last few
// frame intervals (and never less than 2 s, so a slow first keyframe is not a stall).
func flowing(last time.Time, fps int) (bool, string) {
	if last.IsZero() {
		return false, "no frame encoded yet"
	}
	limit := max(2*time.Second, 10*time.Second/time.Duration(max(fps, 1)))
	if age := time.Since(last); age > limit {
		return false, "no frame encoded for " + age.Round(time.Millisecond).String()
	}
	return true, ""
}

// reportStatus keeps systemd's one-line status current.
func reportStatus(ctx context.Context, status func() edge.StreamStatus, viewers func() int) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		st := status()
		line := "stream down: " + st.Error
		if st.Live {
			line = fmt.Sprintf("streaming %dx%d %.0f fps %.0f kbit/s to %d viewers", st.Width, st.Height, st.FPS, st.BitrateKbps, viewers())
		}
		sdnotify.Status(line)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func pageURL(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// loadSecret finds the access-token secret: the configured value or file, else the state
// directory's token-secret (created on first start), else a random one for this run only
// (ephemeral: no token minted elsewhere can work, so edged logs one).
func loadSecret(a config.Auth, environ []string) (secret []byte, ephemeral bool, err error) {
	switch {
	case a.Secret != "":
		secret, err = token.ParseSecret([]byte(a.Secret))
	case a.SecretFile != "":
		secret, err = token.ReadSecret(a.SecretFile)
	case envValue(environ, "STATE_DIRECTORY") != "":
		dir, _, _ := strings.Cut(envValue(environ, "STATE_DIRECTORY"), ":")
		secret, err = token.LoadOrCreateSecret(filepath.Join(dir, "token-secret"))
	default:
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return []byte(base64.RawURLEncoding.EncodeToString(b)), true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("auth: %w", err)
	}
	return secret, false, nil
}

// operatorToken is the token in the page link edged logs when it made its own secret.
func operatorToken(secret []byte) string {
	now := time.Now()
	t, _ := token.Mint(secret, token.Claims{
		Identity: "operator", Name: "Operator", Room: "main",
		Grants:   token.Grants{Publish: true, Subscribe: true, Admin: true},
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(24 * time.Hour),
	})
	return t
}

// cameraTrack makes the appliance camera's SFU track, one layer per pipeline layer: viewers'
// keyframe requests reach that layer's encoder, and a layer nobody receives is not encoded.
// With no viewer at all the camera keeps capturing (the status and the watchdog see it work)
// and nothing is encoded: an idle appliance spends no CPU on pictures nobody sees. A viewer
// that joins turns its layer on, which asks for a keyframe, and gets it with the next frame
// captured (a software encoder closed for idleness reopens for it).
func cameraTrack(pipe *pipeline.Pipeline, width, height int) *sfu.Track {
	byLayer := map[*sfu.Layer]*pipeline.Layer{}
	track := sfu.NewTrack(sfu.TrackInfo{ID: "camera-video", Kind: webrtc.RTPCodecTypeVideo, Source: "camera", Codec: edge.H264Codec},
		edge.CameraID,
		func(l *sfu.Layer) {
			if pl := byLayer[l]; pl != nil {
				pl.RequestKeyframe()
			}
		},
		func(active []*sfu.Layer) {
			for sl, pl := range byLayer {
				pl.SetActive(slices.Contains(active, sl))
			}
		})
	track.SetStartKeyframe(func(l *sfu.Layer) {
		if pl := byLayer[l]; pl != nil {
			pl.RequestStartKeyframe()
		}
	})
	for _, pl := range pipe.Layers() {
		w, h := pl.Size()
		if w == 0 {
			w, h = width, height
		}
		l := track.AddLayer(pl.RID(), sfu.Quality(pl.Quality()), w, h)
		byLayer[l] = pl
		pl.SetSink(l)
		pl.SetActive(false)
	}
	return track
}

func envValue(environ []string, key string) string {
	for _, kv := range environ {
		if len(kv) > len(key) && kv[len(key)] == '=' && kv[:len(key)] == key {
			return kv[len(key)+1:]
		}
	}
	return ""
}
