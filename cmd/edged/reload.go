package main

import (
	"io"
	"log/slog"
	"reflect"
	"strings"

	"github.com/edgeflux/edge/edge"
	"github.com/edgeflux/edge/encoder/ratecontrol"
	"github.com/edgeflux/edge/internal/config"
	"github.com/edgeflux/edge/internal/sdnotify"
)

// liveSettings are the parts of a running edged that a reload can change.
type liveSettings struct {
	logLevel *slog.LevelVar
	rate     *ratecontrol.Controller
	srv      *edge.Server
}

// reload re-reads the configuration (file, environment, flags, as at start) and applies what
// can change while calls go on: the log level, the encoder's bitrate range, the viewer and
// participant limits. Other changes are named as needing a restart and left as they are. A
// configuration that does not load changes nothing. It returns the configuration in force.
func reload(cur config.Config, args, environ []string, live liveSettings, log *slog.Logger) config.Config {
	sdnotify.Reloading()
	defer sdnotify.Ready("configuration reloaded")
	next, mode, err := loadConfig(args, io.Discard, environ)
	if err != nil || mode == modeExit {
		log.Error("configuration reload refused; keeping the running one", "err", err)
		return cur
	}
	var applied []string
	if next.Log.Level != cur.Log.Level {
		if err := live.logLevel.UnmarshalText([]byte(next.Log.Level)); err == nil {
			applied = append(applied, "log.level")
		}
	}
	if next.Encoder.BitrateKbps != cur.Encoder.BitrateKbps || next.Encoder.MinBitrateKbps != cur.Encoder.MinBitrateKbps {
		if err := live.rate.SetLimits(next.Encoder.MinBitrateKbps*1000, next.Encoder.BitrateKbps*1000); err != nil {
			log.Error("configuration reload: bitrate", "err", err)
		} else {
			applied = append(applied, "encoder.bitrate_kbps", "encoder.min_bitrate_kbps")
		}
	}
	if next.WebRTC.MaxViewers != cur.WebRTC.MaxViewers || next.WebRTC.MaxParticipants != cur.WebRTC.MaxParticipants {
		live.srv.SetLimits(next.WebRTC.MaxViewers, next.WebRTC.MaxParticipants)
		applied = append(applied, "webrtc.max_viewers", "webrtc.max_participants")
	}
	// What is left different needs a restart: compare with the live fields made equal.
	rest := next
	rest.Log.Level = cur.Log.Level
	rest.Encoder.BitrateKbps, rest.Encoder.MinBitrateKbps = cur.Encoder.BitrateKbps, cur.Encoder.MinBitrateKbps
	rest.WebRTC.MaxViewers, rest.WebRTC.MaxParticipants = cur.WebRTC.MaxViewers, cur.WebRTC.MaxParticipants
	restart := changedSections(cur, rest)
	log.Info("configuration reloaded", "applied", strings.Join(applied, ","), "needs_restart", strings.Join(restart, ","))
	// The running edged now follows next for what it applied, cur for the rest.
	applyTo := cur
	applyTo.Log.Level = next.Log.Level
	applyTo.Encoder.BitrateKbps, applyTo.Encoder.MinBitrateKbps = next.Encoder.BitrateKbps, next.Encoder.MinBitrateKbps
	applyTo.WebRTC.MaxViewers, applyTo.WebRTC.MaxParticipants = next.WebRTC.MaxViewers, next.WebRTC.MaxParticipants
	return applyTo
}

// changedSections names the configuration sections (by their YAML key) that differ.
func changedSections(a, b config.Config) []string {
	var out []string
	va, vb, t := reflect.ValueOf(a), reflect.ValueOf(b), reflect.TypeOf(a)
	for i := range t.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			out = append(out, name)
		}
	}
	return out
}
