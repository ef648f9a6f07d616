// Package config loads and validates edged's configuration: defaults, then a YAML file, then EDGED_* environment variables; flags are applied by the caller before Validate.
//
// cmd/edged/edged.yaml is the commented reference configuration; it sets every
// key to its default and names the environment variable for each.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Version is the configuration file format this edged reads.
const Version = 1

// Config is the complete configuration of edged.
type Config struct {
	Version int     `yaml:"version"`
	Log     Log     `yaml:"log"`
	HTTP    HTTP    `yaml:"http"`
	Auth    Auth    `yaml:"auth"`
	Camera  Camera  `yaml:"camera"`
	Encoder Encoder `yaml:"encoder"`
	WebRTC  WebRTC  `yaml:"webrtc"`
	TURN    TURN    `yaml:"turn"`
	GPIO    GPIO    `yaml:"gpio"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn or error
	Format string `yaml:"format"` // auto, text, json or journal
}

// HTTP configures the web server (page, API, signalling).
type HTTP struct {
	Listen string `yaml:"listen"` // host:port; port 0 picks an ephemeral port
}

// Auth configures access tokens: JWTs signed (HS256) with a secret.
type Auth struct {
	Secret        string `yaml:"secret"`         // the signing secret itself; prefer SecretFile
	SecretFile    string `yaml:"secret_file"`    // file holding it; "" = $STATE_DIRECTORY/token-secret
	TrustLoopback bool   `yaml:"trust_loopback"` // give a token to pages opened from 127.0.0.1/::1
}

// Camera selects and configures the video source.
type Camera struct {
	Device string `yaml:"device"` // "auto", "synthetic" or a path under /dev/
	Format string `yaml:"format"` // auto, yuyv, nv12 or i420
	Width  int    `yaml:"width"`
	Height int    `yaml:"height"`
	FPS    int    `yaml:"fps"`
}

// Encoder configures video encoding.
type Encoder struct {
	Backend          string        `yaml:"backend"` // auto, software, v4l2m2m or a /dev/video path
	BitrateKbps      int           `yaml:"bitrate_kbps"`
	MinBitrateKbps   int           `yaml:"min_bitrate_kbps"` // floor when viewers report congestion
	KeyframeInterval time.Duration `yaml:"keyframe_interval"`
	Layers           string        `yaml:"layers"` // auto, 1, 2 or 3 encodes at full, half, quarter size
}

// WebRTC configures media transport to viewers.
type WebRTC struct {
	UDPPort         int      `yaml:"udp_port"`         // all media on one UDP port; 0 = ephemeral port per session
	Interfaces      []string `yaml:"interfaces"`       // interfaces to gather ICE candidates on; empty = all
	IncludeLoopback bool     `yaml:"include_loopback"` // also gather loopback candidates
	MDNS            bool     `yaml:"mdns"`             // resolve browsers' .local candidates
	NAT1To1IPs      []string `yaml:"nat_1to1_ips"`     // public IPs to announce instead of local ones
	MaxViewers      int      `yaml:"max_viewers"`
	DefaultRoom     string   `yaml:"default_room"`     // the camera's room; /whep/camera plays it
	MaxParticipants int      `yaml:"max_participants"` // per room
}

// TURN configures the relay clients use when no direct path works: the embedded TURN
// server and/or an external one (coturn) sharing a secret, both with time-limited
// credentials (the TURN REST scheme) handed out with each token.
type TURN struct {
	Enabled        bool          `yaml:"enabled"`         // run the embedded TURN server
	Listen         string        `yaml:"listen"`          // its UDP (and TCP) address
	PublicIP       string        `yaml:"public_ip"`       // address clients reach it at; "" = the first usable interface address
	RelayMinPort   int           `yaml:"relay_min_port"`  // relay port range; 0 and 0 = any
	RelayMaxPort   int           `yaml:"relay_max_port"`  //
	ExternalURLs   []string      `yaml:"external_urls"`   // e.g. turn:turn.example.com:3478?transport=udp
	ExternalSecret string        `yaml:"external_secret"` // the external server's static-auth-secret
	CredentialTTL  time.Duration `yaml:"credential_ttl"`  // how long handed-out credentials work
}

// GPIO maps the appliance's buttons and LEDs to GPIO lines. Each line is
// "NAME" (a line name, searched on every /dev/gpiochip*) or "gpiochipN:OFFSET";
// "" means the appliance has no such button or LED.
type GPIO struct {
	PrivacyButton   string        `yaml:"privacy_button"`    // short press toggles privacy mute
	CallButton      string        `yaml:"call_button"`       // short press joins or leaves the call
	ResetButton     string        `yaml:"reset_button"`      // long press resets; "" = long press on the privacy button
	ButtonActiveLow bool          `yaml:"button_active_low"` // a pressed button pulls its line low
	ButtonBias      string        `yaml:"button_bias"`       // auto, pull-up, pull-down, disabled or as-is
	Debounce        time.Duration `yaml:"debounce"`          // 0 = none
	LongPress       time.Duration `yaml:"long_press"`        // hold this long to factory reset; 0 = never
	LEDGreen        string        `yaml:"led_green"`
	LEDRed          string        `yaml:"led_red"`
	LEDActiveLow    bool          `yaml:"led_active_low"` // an LED lights when its line is low
}

// Default returns the built-in configuration; it is valid.
func Default() Config {
	return Config{
		Version: Version,
		Log:     Log{Level: "info", Format: "auto"},
		HTTP:    HTTP{Listen: ":8080"},
		Camera:  Camera{Device: "auto", Format: "auto", Width: 1280, Height: 720, FPS: 30},
		Encoder: Encoder{Backend: "auto", BitrateKbps: 2000, MinBitrateKbps: 300, KeyframeInterval: 2 * time.Second, Layers: "auto"},
		WebRTC:  WebRTC{UDPPort: 8189, MDNS: true, MaxViewers: 200, DefaultRoom: "main", MaxParticipants: 50},
		TURN:    TURN{Enabled: true, Listen: ":3478", CredentialTTL: 12 * time.Hour},
		GPIO: GPIO{ButtonActiveLow: true, ButtonBias: "auto", Debounce: 30 * time.Millisecond,
			LongPress: 10 * time.Second},
	}
}

// Validate reports every problem in c at once, each naming the field by its
// YAML path and saying how to fix it.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Version != Version {
		add(fmt.Errorf("version: %d is not supported; this edged reads version %d", c.Version, Version))
	}
	add(oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"))
	add(oneOf("log.format", c.Log.Format, "auto", "text", "json", "journal"))
	add(checkListen("http.listen", c.HTTP.Listen))
	add(checkSecret(c.Auth))
	if d := c.Camera.Device; d != "auto" && d != "synthetic" && !isDevPath(d) {
		add(fmt.Errorf(`camera.device: %q is not "auto", "synthetic" or a /dev/ path; use e.g. /dev/video0`, d))
	}
	add(oneOf("camera.format", c.Camera.Format, "auto", "yuyv", "nv12", "i420"))
	add(checkEven("camera.width", "width", c.Camera.Width, 64, 4096))
	add(checkEven("camera.height", "height", c.Camera.Height, 64, 4096))
	add(inRange("camera.fps", c.Camera.FPS, 1, 120))
	if b := c.Encoder.Backend; b != "auto" && b != "software" && b != "v4l2m2m" && !isDevPath(b) {
		add(fmt.Errorf(`encoder.backend: %q is not "auto", "software", "v4l2m2m" or a /dev/ path; use auto to let edged choose`, b))
	}
	add(inRange("encoder.bitrate_kbps", c.Encoder.BitrateKbps, 100, 50000))
	// Against an invalid bitrate_kbps the floor is not checked: one mistake, one message.
	if m, top := c.Encoder.MinBitrateKbps, c.Encoder.BitrateKbps; m < 50 || (top >= 100 && m > top) {
		add(fmt.Errorf("encoder.min_bitrate_kbps: %d is out of range; use 50..encoder.bitrate_kbps (%d)", m, c.Encoder.BitrateKbps))
	}
	if k := c.Encoder.KeyframeInterval; k < 500*time.Millisecond || k > time.Minute {
		add(fmt.Errorf("encoder.keyframe_interval: %s is out of range; use 500ms..60s", k))
	}
	add(checkLayers(c.Encoder.Layers, c.Camera.Width, c.Camera.Height))
	add(inRange("webrtc.udp_port", c.WebRTC.UDPPort, 0, 65535))
	for i, name := range c.WebRTC.Interfaces {
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n") {
			add(fmt.Errorf("webrtc.interfaces[%d]: %q is not an interface name; use a name such as eth0", i, name))
		}
	}
	for i, ip := range c.WebRTC.NAT1To1IPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			add(fmt.Errorf("webrtc.nat_1to1_ips[%d]: %q is not an IP address; use e.g. 203.0.113.10", i, ip))
		}
	}
	add(inRange("webrtc.max_viewers", c.WebRTC.MaxViewers, 1, 5000))
	add(inRange("webrtc.max_participants", c.WebRTC.MaxParticipants, 2, 500))
	if !roomName.MatchString(c.WebRTC.DefaultRoom) {
		add(fmt.Errorf("webrtc.default_room: %q is not a room name; use 1 to 64 letters, digits, '-' or '_'", c.WebRTC.DefaultRoom))
	}
	add(checkTURN(c.TURN))
	errs = append(errs, c.GPIO.validate()...)
	return errors.Join(errs...)
}

// MinLayerSize is the smallest width and height a simulcast layer is encoded at.
const MinLayerSize = 64

// checkLayers checks encoder.layers: auto, or 1 to 3 layers (full, half and quarter size),
// the smallest of which must still be MinLayerSize or more on each side.
func checkLayers(v string, w, h int) error {
	if v == "auto" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 3 {
		return fmt.Errorf(`encoder.layers: %q is not valid; use auto, or 1, 2 or 3 (encodes at full, half and quarter size)`, v)
	}
	if sw, sh := w>>(n-1), h>>(n-1); sw < MinLayerSize || sh < MinLayerSize {
		return fmt.Errorf("encoder.layers: %d layers of a %dx%d camera make a %dx%d layer, below %d pixels a side; use fewer layers or auto", n, w, h, sw, sh, MinLayerSize)
	}
	return nil
}

func oneOf(path, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not valid; use one of %s", path, v, strings.Join(allowed, ", "))
}

func inRange(path string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s: %d is out of range; use %d..%d", path, v, lo, hi)
	}
	return nil
}

func checkEven(path, what string, v, lo, hi int) error {
	if err := inRange(path, v, lo, hi); err != nil {
		return err
	}
	if v%2 != 0 {
		return fmt.Errorf("%s: %d is odd; use an even %s such as %d", path, v, what, v-1)
	}
	return nil
}

func checkListen(field, listen string) error {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		msg := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			msg = strings.TrimSuffix(ae.Err, " in address")
		}
		return fmt.Errorf(`%s: %q: %s; use host:port such as ":8080"`, field, listen, msg)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf(`%s: port %q in %q is not a number 0..65535; use host:port such as ":8080"`, field, port, listen)
	}
	return nil
}

func checkSecret(a Auth) error {
	for _, r := range a.Secret {
		if r <= ' ' || r > '~' {
			return errors.New("auth.secret: contains spaces, control or non-ASCII characters; use letters, digits and punctuation")
		}
	}
	if a.Secret != "" && len(a.Secret) < 32 {
		return fmt.Errorf("auth.secret: too short (%d characters); use at least 32 random characters (head -c 32 /dev/urandom | base64) or leave it empty", len(a.Secret))
	}
	if a.Secret != "" && a.SecretFile != "" {
		return errors.New("auth.secret and auth.secret_file are both set; keep one")
	}
	if a.SecretFile != "" && !filepath.IsAbs(a.SecretFile) {
		return fmt.Errorf("auth.secret_file: %q is not an absolute path", a.SecretFile)
	}
	return nil
}

var roomName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkTURN(t TURN) error {
	var errs []error
	if t.Enabled {
		errs = append(errs, checkListen("turn.listen", t.Listen))
	}
	if t.PublicIP != "" && net.ParseIP(t.PublicIP) == nil {
		errs = append(errs, fmt.Errorf("turn.public_ip: %q is not an IP address; use e.g. 192.0.2.10 or leave it empty", t.PublicIP))
	}
	if t.RelayMinPort < 0 || t.RelayMaxPort > 65535 || t.RelayMinPort > t.RelayMaxPort || (t.RelayMinPort == 0) != (t.RelayMaxPort == 0) {
		errs = append(errs, fmt.Errorf("turn.relay_min_port and relay_max_port: %d..%d is not a port range; set both (e.g. 49152 and 49999) or neither", t.RelayMinPort, t.RelayMaxPort))
	}
	for i, u := range t.ExternalURLs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
			errs = append(errs, fmt.Errorf("turn.external_urls[%d]: %q is not a turn:, turns: or stun: URL", i, u))
		}
	}
	if len(t.ExternalURLs) > 0 && len(t.ExternalSecret) < 16 {
		errs = append(errs, errors.New("turn.external_secret: the external TURN server's shared secret (16+ characters) is needed with turn.external_urls"))
	}
	if t.CredentialTTL < time.Minute || t.CredentialTTL > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("turn.credential_ttl: %s is out of range; use 1m..168h", t.CredentialTTL))
	}
	return errors.Join(errs...)
}

// isDevPath reports whether d is a clean absolute path below /dev/.
func isDevPath(d string) bool {
	return strings.HasPrefix(d, "/dev/") && path.Clean(d) == d
}

// gpioChipOffset matches a line given as chip and offset, e.g. gpiochip0:17.
var gpioChipOffset = regexp.MustCompile(`^gpiochip[0-9]+:[0-9]{1,5}$`)

func (g *GPIO) validate() []error {
	var errs []error
	lines := []struct{ key, spec string }{
		{"privacy_button", g.PrivacyButton}, {"call_button", g.CallButton}, {"reset_button", g.ResetButton},
		{"led_green", g.LEDGreen}, {"led_red", g.LEDRed},
	}
	usedBy := map[string]string{}
	for _, l := range lines {
		if l.spec == "" {
			continue
		}
		if err := checkGPIOLine("gpio."+l.key, l.spec); err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := usedBy[l.spec]; dup {
			errs = append(errs, fmt.Errorf("gpio.%s: line %q is already gpio.%s; give each button and LED its own line", l.key, l.spec, other))
			continue
		}
		usedBy[l.spec] = l.key
	}
	if err := oneOf("gpio.button_bias", g.ButtonBias, "auto", "pull-up", "pull-down", "disabled", "as-is"); err != nil {
		errs = append(errs, err)
	}
	if d := g.Debounce; d < 0 || d > 500*time.Millisecond {
		errs = append(errs, fmt.Errorf("gpio.debounce: %s is out of range; use 0 (none) or up to 500ms, e.g. 30ms", d))
	}
	if l := g.LongPress; l != 0 && (l < 2*time.Second || l > time.Minute) {
		errs = append(errs, fmt.Errorf("gpio.long_press: %s is out of range; use 2s..60s, or 0 to never factory reset from a button", l))
	}
	if g.ResetButton != "" && g.LongPress == 0 {
		errs = append(errs, errors.New("gpio.reset_button: set, but gpio.long_press is 0 so it would do nothing; set long_press (e.g. 10s) or remove reset_button"))
	}
	return errs
}

// checkGPIOLine checks the syntax of a line: a name of at most 31 printable
// characters (the kernel's limit), or gpiochipN:OFFSET.
func checkGPIOLine(path, spec string) error {
	if gpioChipOffset.MatchString(spec) {
		return nil
	}
	if strings.HasPrefix(spec, "gpiochip") && strings.Contains(spec, ":") {
		return fmt.Errorf("%s: %q is not chip:offset; write it as gpiochipN:OFFSET, e.g. gpiochip0:17", path, spec)
	}
	if len(spec) > 31 || strings.TrimSpace(spec) != spec || strings.ContainsFunc(spec, func(r rune) bool { return r < ' ' || r > '~' }) {
		return fmt.Errorf(`%s: %q is not a line name (up to 31 printable ASCII characters, no surrounding spaces); use a name such as "BUTTON_PRIVACY" as gpioinfo lists it, or gpiochipN:OFFSET`, path, spec)
	}
	return nil
}
