package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const referencePath = "../../cmd/edged/edged.yaml"

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		edit func(*Config) // applied to Default() to get the expected result
	}{
		{"empty file", "", func(*Config) {}},
		{"comments only", "# nothing\n\n# here\n", func(*Config) {}},
		{"empty document", "---\n", func(*Config) {}},
		{"null document", "~\n", func(*Config) {}},
		{"version 1", "version: 1\n", func(*Config) {}},
		{"empty section keeps defaults", "http:\n", func(*Config) {}},
		{"null leaf keeps default", "camera:\n  width:\n", func(*Config) {}},
		{"one key", "http:\n  listen: 127.0.0.1:9000\n", func(c *Config) { c.HTTP.Listen = "127.0.0.1:9000" }},
		{"all kinds", `
auth: {secret: abcdefghijklmnopqrstuvwxyz0123456789, trust_loopback: true}
camera: {width: 640, height: 480}
encoder: {keyframe_interval: 1500ms}
webrtc:
  interfaces: [eth0, wlan0]
  nat_1to1_ips:
    - 203.0.113.10
  mdns: false
`, func(c *Config) {
			c.Auth = Auth{Secret: "abcdefghijklmnopqrstuvwxyz0123456789", TrustLoopback: true}
			c.Camera.Width, c.Camera.Height = 640, 480
			c.Encoder.KeyframeInterval = 1500 * time.Millisecond
			c.WebRTC.Interfaces = []string{"eth0", "wlan0"}
			c.WebRTC.NAT1To1IPs = []string{"203.0.113.10"}
			c.WebRTC.MDNS = false
		}},
		{"empty list is nil", "webrtc:\n  interfaces: []\n", func(*Config) {}},
		{"alias", "camera: &cam\n  fps: 15\n", func(c *Config) { c.Camera.FPS = 15 }},
		{"gpio", `
gpio:
  privacy_button: BUTTON_PRIVACY
  call_button: gpiochip0:17
  button_active_low: false
  button_bias: as-is
  debounce: 0s
  long_press: 5s
  led_green: LED_GREEN
  led_active_low: true
`, func(c *Config) {
			c.GPIO.PrivacyButton, c.GPIO.CallButton = "BUTTON_PRIVACY", "gpiochip0:17"
			c.GPIO.ButtonActiveLow, c.GPIO.ButtonBias = false, "as-is"
			c.GPIO.Debounce, c.GPIO.LongPress = 0, 5*time.Second
			c.GPIO.LEDGreen, c.GPIO.LEDActiveLow = "LED_GREEN", true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc), "edged.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			tt.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // each must appear in the error
	}{
		{"unknown top-level key", "version: 1\nhtp:\n  listen: :80\n",
			[]string{`edged.yaml:2: unknown key "htp" at top level (valid keys: version, log, http, auth, camera, encoder, webrtc, turn, gpio)`}},
		{"unknown nested key", "log:\n  level: info\n\n\n\n# x\nhttp:\n  listn: :80\n",
			[]string{`edged.yaml:8: unknown key "listn" in http (valid keys: listen)`}},
		{"unknown key in flow mapping", "camera: {width: 640, hieght: 480}\n",
			[]string{`edged.yaml:1: unknown key "hieght" in camera (valid keys: device, format, width, height, fps)`}},
		{"merge key is unknown", "x: &x {fps: 1}\ncamera:\n  <<: *x\n",
			[]string{`edged.yaml:1: unknown key "x"`, `edged.yaml:3: unknown key "<<" in camera`}},
		{"wrong type int", "camera:\n  width: wide\n",
			[]string{"edged.yaml:2: camera.width: cannot unmarshal !!str `wide` into int; want an integer"}},
		{"wrong type bool", "webrtc:\n  mdns: maybe\n",
			[]string{"edged.yaml:2: webrtc.mdns:", "want true or false"}},
		{"wrong type duration", "encoder:\n  keyframe_interval: 2\n",
			[]string{"edged.yaml:2: encoder.keyframe_interval:", "want a duration"}},
		{"wrong type list", "webrtc:\n  interfaces: eth0\n",
			[]string{"edged.yaml:2: webrtc.interfaces:", "want a list of strings"}},
		{"list for string", "http:\n  listen: [a]\n",
			[]string{"edged.yaml:2: http.listen:", "want a string"}},
		{"section not a mapping", "http: 8080\n",
			[]string{`edged.yaml:1: http must be a mapping (valid keys: listen), not the value "8080"`}},
		{"document is a list", "- a\n- b\n",
			[]string{"edged.yaml:1: the document must be a mapping", "not a list"}},
		{"document is a string", "hello\n",
			[]string{`edged.yaml:1: the document must be a mapping`, `not the value "hello"`}},
		{"duplicate top-level key", "http:\n  listen: :1\nhttp:\n  listen: :2\n",
			[]string{`edged.yaml:3: duplicate key "http" at top level (first at line 1)`}},
		{"duplicate nested key", "camera:\n  fps: 10\n  width: 640\n  fps: 20\n",
			[]string{`edged.yaml:4: duplicate key "fps" in camera (first at line 2)`}},
		{"non-scalar key", "camera:\n  ? [a]\n  : 1\n",
			[]string{"edged.yaml:2: a key in camera is a list; keys must be names"}},
		{"version 2", "version: 2\nnew_section: {}\n",
			[]string{"edged.yaml:1: version 2 is not supported; this edged reads version 1"}},
		{"version 0", "version: 0\n", []string{"edged.yaml:1: version 0 is not supported"}},
		{"version not a number", "version: one\n", []string{"edged.yaml:1: version:", "want an integer"}},
		{"syntax error", "http:\n  listen: :80\n bad: [\n", []string{"edged.yaml:"}},
		{"tab indentation", "http:\n\tlisten: :80\n", []string{"edged.yaml:2: found character that cannot start any token"}},
		{"two documents", "http: {}\n---\nlog: {}\n", []string{"edged.yaml:2: a second YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "edged.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	doc := "camera:\n  widht: 640\n  fps: fast\nhttp:\n  listn: :80\n"
	_, err := Parse([]byte(doc), "edged.yaml")
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	for _, w := range []string{"edged.yaml:2: unknown key \"widht\"", "edged.yaml:3: camera.fps:", "edged.yaml:5: unknown key \"listn\""} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		edit func(*Config)
	}{
		{"none", nil, func(*Config) {}},
		{"other variables ignored", []string{"HOME=/root", "PATH=/bin", "EDGEDX=1"}, func(*Config) {}},
		{"config path skipped", []string{"EDGED_CONFIG=/etc/edged/edged.yaml"}, func(*Config) {}},
		{"string", []string{"EDGED_HTTP_LISTEN=:9090", "EDGED_LOG_LEVEL=debug"}, func(c *Config) {
			c.HTTP.Listen = ":9090"
			c.Log.Level = "debug"
		}},
		{"value with equals sign", []string{"EDGED_AUTH_SECRET=abc=def=ghi=jkl=mno=pqr=stu=vwx=yz0=123"}, func(c *Config) { c.Auth.Secret = "abc=def=ghi=jkl=mno=pqr=stu=vwx=yz0=123" }},
		{"int", []string{"EDGED_CAMERA_WIDTH=640", "EDGED_WEBRTC_UDP_PORT=0"}, func(c *Config) {
			c.Camera.Width = 640
			c.WebRTC.UDPPort = 0
		}},
		{"bool", []string{"EDGED_AUTH_TRUST_LOOPBACK=true", "EDGED_WEBRTC_MDNS=0"}, func(c *Config) {
			c.Auth.TrustLoopback = true
			c.WebRTC.MDNS = false
		}},
		{"duration", []string{"EDGED_ENCODER_KEYFRAME_INTERVAL=3s"}, func(c *Config) { c.Encoder.KeyframeInterval = 3 * time.Second }},
		{"list", []string{"EDGED_WEBRTC_INTERFACES=lo, eth0,,", "EDGED_WEBRTC_NAT_1TO1_IPS=203.0.113.10"}, func(c *Config) {
			c.WebRTC.Interfaces = []string{"lo", "eth0"}
			c.WebRTC.NAT1To1IPs = []string{"203.0.113.10"}
		}},
		{"empty list", []string{"EDGED_WEBRTC_INTERFACES="}, func(*Config) {}},
		{"last wins", []string{"EDGED_CAMERA_FPS=10", "EDGED_CAMERA_FPS=20"}, func(c *Config) { c.Camera.FPS = 20 }},
		{"gpio", []string{"EDGED_GPIO_PRIVACY_BUTTON=gpiochip1:3", "EDGED_GPIO_LED_RED=LED_RED",
			"EDGED_GPIO_BUTTON_ACTIVE_LOW=false", "EDGED_GPIO_LONG_PRESS=15s", "EDGED_GPIO_DEBOUNCE=10ms"}, func(c *Config) {
			c.GPIO.PrivacyButton, c.GPIO.LEDRed = "gpiochip1:3", "LED_RED"
			c.GPIO.ButtonActiveLow = false
			c.GPIO.LongPress, c.GPIO.Debounce = 15*time.Second, 10*time.Millisecond
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load("", tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Default()
			tt.edit(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"bad int", []string{"EDGED_CAMERA_WIDTH=wide"}, []string{`EDGED_CAMERA_WIDTH="wide": want an integer`}},
		{"bad bool", []string{"EDGED_AUTH_TRUST_LOOPBACK=yes"}, []string{`EDGED_AUTH_TRUST_LOOPBACK="yes": want true or false`}},
		{"bad duration", []string{"EDGED_ENCODER_KEYFRAME_INTERVAL=3"}, []string{`EDGED_ENCODER_KEYFRAME_INTERVAL="3": want a duration`}},
		{"unknown key", []string{"EDGED_HTTP_LISTN=:80"}, []string{"EDGED_HTTP_LISTN: unknown variable (valid: EDGED_HTTP_LISTEN)"}},
		{"unknown section", []string{"EDGED_CAM_WIDTH=1"}, []string{"EDGED_CAM_WIDTH: unknown variable", "EDGED_CAMERA_WIDTH", "EDGED_WEBRTC_MDNS"}},
		{"version is not a setting", []string{"EDGED_VERSION=1"}, []string{"EDGED_VERSION: unknown variable"}},
		{"all reported", []string{"EDGED_CAMERA_FPS=x", "EDGED_FOO=1"}, []string{"EDGED_CAMERA_FPS", "EDGED_FOO"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("", tt.env)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" means valid
	}{
		{"version", func(c *Config) { c.Version = 2 }, "version: 2 is not supported; this edged reads version 1"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, `log.level: "verbose" is not valid; use one of debug, info, warn, error`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format: "xml" is not valid`},
		{"listen no port", func(c *Config) { c.HTTP.Listen = "abc" }, `http.listen: "abc": missing port; use host:port such as ":8080"`},
		{"listen bad port", func(c *Config) { c.HTTP.Listen = ":http" }, `http.listen: port "http" in ":http" is not a number 0..65535`},
		{"listen port too big", func(c *Config) { c.HTTP.Listen = ":65536" }, `http.listen: port "65536"`},
		{"listen port zero", func(c *Config) { c.HTTP.Listen = "127.0.0.1:0" }, ""},
		{"listen ipv6", func(c *Config) { c.HTTP.Listen = "[::1]:8080" }, ""},
		{"secret short", func(c *Config) { c.Auth.Secret = "hunter2" }, "auth.secret: too short (7 characters); use at least 32 random characters"},
		{"secret space", func(c *Config) { c.Auth.Secret = "correct horse battery staple and more" }, "auth.secret: contains spaces"},
		{"secret and file", func(c *Config) {
			c.Auth.Secret, c.Auth.SecretFile = "0123456789abcdef0123456789abcdef", "/etc/edged/secret"
		}, "auth.secret and auth.secret_file are both set"},
		{"secret file relative", func(c *Config) { c.Auth.SecretFile = "secret" }, `auth.secret_file: "secret" is not an absolute path`},
		{"secret ok", func(c *Config) { c.Auth.Secret = "0123456789abcdef0123456789abcdef" }, ""},
		{"device relative", func(c *Config) { c.Camera.Device = "video0" }, `camera.device: "video0" is not "auto", "synthetic" or a /dev/ path`},
		{"device escapes /dev", func(c *Config) { c.Camera.Device = "/dev/../etc/passwd" }, "camera.device:"},
		{"device /dev/ only", func(c *Config) { c.Camera.Device = "/dev/" }, "camera.device:"},
		{"device path", func(c *Config) { c.Camera.Device = "/dev/v4l/by-id/usb-cam-video-index0" }, ""},
		{"device synthetic", func(c *Config) { c.Camera.Device = "synthetic" }, ""},
		{"camera format", func(c *Config) { c.Camera.Format = "mjpeg" }, `camera.format: "mjpeg" is not valid; use one of auto, yuyv, nv12, i420`},
		{"width odd", func(c *Config) { c.Camera.Width = 1281 }, "camera.width: 1281 is odd; use an even width such as 1280"},
		{"width small", func(c *Config) { c.Camera.Width = 32 }, "camera.width: 32 is out of range; use 64..4096"},
		{"height odd", func(c *Config) { c.Camera.Height = 719 }, "camera.height: 719 is odd; use an even height such as 718"},
		{"height big", func(c *Config) { c.Camera.Height = 8192 }, "camera.height: 8192 is out of range; use 64..4096"},
		{"fps", func(c *Config) { c.Camera.FPS = 0 }, "camera.fps: 0 is out of range; use 1..120"},
		{"backend", func(c *Config) { c.Encoder.Backend = "nvenc" }, `encoder.backend: "nvenc" is not "auto", "software", "v4l2m2m" or a /dev/ path`},
		{"bitrate", func(c *Config) { c.Encoder.BitrateKbps = 5 }, "encoder.bitrate_kbps: 5 is out of range; use 100..50000"},
		{"min bitrate above target", func(c *Config) { c.Encoder.MinBitrateKbps = 3000 }, "encoder.min_bitrate_kbps: 3000 is out of range; use 50..encoder.bitrate_kbps (2000)"},
		{"keyframe short", func(c *Config) { c.Encoder.KeyframeInterval = 100 * time.Millisecond }, "encoder.keyframe_interval: 100ms is out of range; use 500ms..60s"},
		{"keyframe long", func(c *Config) { c.Encoder.KeyframeInterval = 2 * time.Minute }, "encoder.keyframe_interval: 2m0s is out of range"},
		{"layers word", func(c *Config) { c.Encoder.Layers = "simulcast" }, `encoder.layers: "simulcast" is not valid; use auto, or 1, 2 or 3`},
		{"layers four", func(c *Config) { c.Encoder.Layers = "4" }, `encoder.layers: "4" is not valid`},
		{"layers zero", func(c *Config) { c.Encoder.Layers = "0" }, `encoder.layers: "0" is not valid`},
		{"layers too small", func(c *Config) { c.Encoder.Layers, c.Camera.Width, c.Camera.Height = "3", 320, 180 },
			"encoder.layers: 3 layers of a 320x180 camera make a 80x45 layer, below 64 pixels a side; use fewer layers or auto"},
		{"layers three", func(c *Config) { c.Encoder.Layers = "3" }, ""},
		{"layers one", func(c *Config) { c.Encoder.Layers = "1" }, ""},
		{"udp port", func(c *Config) { c.WebRTC.UDPPort = 70000 }, "webrtc.udp_port: 70000 is out of range; use 0..65535"},
		{"udp port zero", func(c *Config) { c.WebRTC.UDPPort = 0 }, ""},
		{"interface", func(c *Config) { c.WebRTC.Interfaces = []string{"eth0", ""} }, `webrtc.interfaces[1]: "" is not an interface name`},
		{"nat ip", func(c *Config) { c.WebRTC.NAT1To1IPs = []string{"2001:db8::1", "example.com"} }, `webrtc.nat_1to1_ips[1]: "example.com" is not an IP address`},
		{"max viewers", func(c *Config) { c.WebRTC.MaxViewers = 0 }, "webrtc.max_viewers: 0 is out of range; use 1..5000"},
		{"gpio all lines", func(c *Config) {
			c.GPIO = GPIO{PrivacyButton: "BUTTON_PRIVACY", CallButton: "gpiochip0:17", ResetButton: "gpiochip10:65535",
				LEDGreen: "LED 1", LEDRed: "PWR_LED", ButtonBias: "pull-up", LongPress: 2 * time.Second}
		}, ""},
		{"gpio bad chip offset", func(c *Config) { c.GPIO.CallButton = "gpiochip0:x" }, `gpio.call_button: "gpiochip0:x" is not chip:offset; write it as gpiochipN:OFFSET`},
		{"gpio chip without offset", func(c *Config) { c.GPIO.LEDRed = "gpiochip0:" }, "gpio.led_red: "},
		{"gpio name too long", func(c *Config) { c.GPIO.LEDGreen = strings.Repeat("x", 32) }, "gpio.led_green: \"xxxx"},
		{"gpio name spaces", func(c *Config) { c.GPIO.ResetButton = " RESET" }, `gpio.reset_button: " RESET" is not a line name`},
		{"gpio name control", func(c *Config) { c.GPIO.PrivacyButton = "A\tB" }, "gpio.privacy_button: "},
		{"gpio same line twice", func(c *Config) { c.GPIO.PrivacyButton, c.GPIO.LEDRed = "gpiochip0:1", "gpiochip0:1" },
			`gpio.led_red: line "gpiochip0:1" is already gpio.privacy_button`},
		{"gpio bias", func(c *Config) { c.GPIO.ButtonBias = "up" }, `gpio.button_bias: "up" is not valid; use one of auto, pull-up, pull-down, disabled, as-is`},
		{"gpio debounce negative", func(c *Config) { c.GPIO.Debounce = -time.Millisecond }, "gpio.debounce: -1ms is out of range"},
		{"gpio debounce long", func(c *Config) { c.GPIO.Debounce = time.Second }, "gpio.debounce: 1s is out of range; use 0 (none) or up to 500ms"},
		{"gpio debounce zero", func(c *Config) { c.GPIO.Debounce = 0 }, ""},
		{"gpio long press short", func(c *Config) { c.GPIO.LongPress = time.Second }, "gpio.long_press: 1s is out of range; use 2s..60s, or 0"},
		{"gpio long press long", func(c *Config) { c.GPIO.LongPress = 2 * time.Minute }, "gpio.long_press: 2m0s is out of range"},
		{"gpio long press off", func(c *Config) { c.GPIO.LongPress = 0 }, ""},
		{"gpio reset button without long press", func(c *Config) { c.GPIO.ResetButton, c.GPIO.LongPress = "RESET", 0 },
			"gpio.reset_button: set, but gpio.long_press is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("Validate() = nil, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Validate() = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := Default()
	c.Camera.Width = 1281
	c.Encoder.BitrateKbps = 5
	c.HTTP.Listen = "abc"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 3 {
		t.Errorf("Validate() reported %d problems, want 3:\n%v", n, err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edged.yaml")
	if err := os.WriteFile(path, []byte("camera:\n  fps: 15\n  width: 640\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("file then env", func(t *testing.T) {
		got, err := Load(path, []string{"EDGED_CAMERA_FPS=25"})
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		want := Default()
		want.Camera.FPS, want.Camera.Width = 25, 640
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("no file", func(t *testing.T) {
		got, err := Load("", nil)
		if err != nil || !reflect.DeepEqual(got, Default()) {
			t.Errorf("Load(\"\", nil) = %+v, %v; want Default(), nil", got, err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.yaml")
		_, err := Load(missing, nil)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load(missing) error = %v, want fs.ErrNotExist", err)
		}
		if err != nil && !strings.Contains(err.Error(), missing) {
			t.Errorf("error %q does not name %s", err, missing)
		}
	})
	t.Run("bad file names path", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte("\nhttp:\n  port: 80\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(bad, nil)
		if want := bad + `:3: unknown key "port" in http`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(bad) error = %v, want it to contain %q", err, want)
		}
	})
}

// TestReferenceConfigParses keeps cmd/edged/edged.yaml honest: it must be
// valid, equal the defaults, and set and document every key.
func TestReferenceConfigParses(t *testing.T) {
	data, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data, "edged.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("reference config differs from Default():\n got %+v\nwant %+v", got, want)
	}

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	c := Default()
	leaves(reflect.ValueOf(&c).Elem(), "", func(path string, _ reflect.Value) {
		n, key := doc.Content[0], (*yaml.Node)(nil)
		for _, name := range strings.Split(path, ".") {
			if key, n = lookup(n, name); n == nil {
				t.Errorf("reference config does not set %s", path)
				return
			}
		}
		if key.HeadComment == "" {
			t.Errorf("reference config has no comment above %s", path)
		}
		if path != "version" && !strings.Contains(key.HeadComment, "# Env: "+envName(path)) {
			t.Errorf("reference config does not name the variable %s above %s", envName(path), path)
		}
	})
}

// encoder.layers is a word or a number: YAML's 3 and the environment's "2" both read.
func TestLayersNumberOrWord(t *testing.T) {
	c, err := Parse([]byte("encoder:\n  layers: 3\n"), "edged.yaml")
	if err != nil || c.Encoder.Layers != "3" {
		t.Errorf("layers: 3 parsed as %q, %v", c.Encoder.Layers, err)
	}
	c, err = Load("", []string{"EDGED_ENCODER_LAYERS=2"})
	if err != nil || c.Encoder.Layers != "2" {
		t.Errorf("EDGED_ENCODER_LAYERS=2 read as %q, %v", c.Encoder.Layers, err)
	}
}
