package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/edgeflux/edge/internal/config"
	"github.com/edgeflux/edge/internal/logging"
	"github.com/edgeflux/edge/provisioning/device"
)

var version = "dev"

func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
	fs := flag.NewFlagSet("edge-provision", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "/var/lib/edge-provision", "state directory: device key (0600), certificate, last good configuration")
	cfgPath := fs.String("config", "/etc/edged/edged.yaml", "edged's configuration file, written by this agent")
	claimPath := fs.String("claim", "/boot/edge-claim.json", "claim file written by the flasher (server, CA fingerprint, claim token)")
	imageClaim := fs.String("image-claim", "/usr/share/edge-provision/claim.json", "claim built into the image, used when -claim does not exist")
	restartCmd := fs.String("restart-cmd", "systemctl restart edged.service", "command that makes edged start again with the new configuration")
	reloadCmd := fs.String("reload-cmd", "", "command that makes edged apply live-applicable changes without a restart (e.g. systemctl reload edged.service); empty: restart")
	readyCmd := fs.String("ready-cmd", "systemctl is-active --quiet edged.service", "command that succeeds once edged is ready; polled")
	readyURL := fs.String("ready-url", "", "URL that answers 2xx once edged is ready; polled (instead of -ready-cmd)")
	readyTimeout := fs.Duration("ready-timeout", 60*time.Second, "how long edged has to become ready before the configuration is rolled back")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "heartbeat interval")
	serial := fs.String("serial", "", "hardware serial (default: device tree, DMI or machine-id)")
	board := fs.String("board", "", "board model (default: device tree or DMI)")
	firmware := fs.String("firmware-version", "", "firmware version to report (default: VERSION_ID of /etc/os-release)")
	statusURL := fs.String("status-url", "", "edged's status API (e.g. http://127.0.0.1:8080/api/status): camera, encoder and health for heartbeats")
	statusTokenFile := fs.String("status-token-file", "", "file holding a bearer token for -status-url")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "edge-provision", version)
		return nil
	}
	log, err := logging.New(stderr, *level, "auto", environ)
	if err != nil {
		return err
	}
	hw := device.DetectHardware("/")
	if *serial != "" {
		hw.Serial = *serial
	}
	if *board != "" {
		hw.Board = *board
	}
	if hw.Serial == "" {
		return errors.New("no hardware serial found: give one with -serial")
	}
	if *firmware == "" {
		*firmware = osVersion("/etc/os-release")
	}
	hooks := device.Hooks{
		Activate: func(ctx context.Context, live bool) error {
			c := *restartCmd
			if live && *reloadCmd != "" {
				c = *reloadCmd
			}
			return runCmd(ctx, c)
		},
		Ready: func(ctx context.Context, _ config.Config) error {
			return pollReady(ctx, log, *readyCmd, *readyURL)
		},
	}
	var status func(context.Context) device.Status
	if *statusURL != "" {
		token := ""
		if *statusTokenFile != "" {
			b, err := os.ReadFile(*statusTokenFile)
			if err != nil {
				return fmt.Errorf("status token: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		status = func(ctx context.Context) device.Status { return edgedStatus(ctx, *statusURL, token) }
	}
	agent, err := device.New(device.Config{
		Status:   status,
		StateDir: *state, ConfigPath: *cfgPath, ClaimPath: *claimPath, ImageClaimPath: *imageClaim, Hardware: hw, Hooks: hooks,
		AgentVersion: version, FirmwareVersion: *firmware, HeartbeatEvery: *heartbeat, ReadyTimeout: *readyTimeout,
		Logger: log.With("component", "provision"),
	})
	if err != nil {
		return err
	}
	log.Info("edge-provision starting", "version", version, "serial", hw.Serial, "board", hw.Board, "macs", len(hw.MACs), "config", *cfgPath)
	return agent.Run(ctx)
}

func runCmd(ctx context.Context, command string) error {
	f := strings.Fields(command)
	if len(f) == 0 {
		return nil
	}
	out, err := exec.CommandContext(ctx, f[0], f[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", command, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// pollReady runs the readiness check every 500 ms until it passes or ctx ends.
func pollReady(ctx context.Context, log *slog.Logger, command, url string) error {
	var last error
	for {
		if url != "" {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					return nil
				}
				err = fmt.Errorf("%s answered %s", url, resp.Status)
			}
			last = err
		} else {
			if last = runCmd(ctx, command); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func osVersion(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_ID="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// edgedStatus reads edged's GET /api/status: the camera and encoder in use and whether media
// flows.
func edgedStatus(ctx context.Context, url, token string) device.Status {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return device.Status{Health: "error"}
	}
	defer resp.Body.Close()
	var st struct {
		Live    bool   `json:"live"`
		Source  string `json:"source"`
		Encoder string `json:"encoder"`
		Error   string `json:"error"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&st) != nil {
		return device.Status{Health: "error"}
	}
	health := "ok"
	if !st.Live || st.Error != "" {
		health = "degraded"
	}
	return device.Status{Health: health, Camera: st.Source, Encoder: st.Encoder}
}
