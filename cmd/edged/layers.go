package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/openh264"
	"github.com/edgeflux/edge/encoder/probe"
	"github.com/edgeflux/edge/encoder/v4l2m2m"
	"github.com/edgeflux/edge/internal/config"
	"github.com/edgeflux/edge/internal/pipeline"
)

// layerSpec is one simulcast layer: its quality and size, and its share of the bitrate.
type layerSpec struct {
	quality pipeline.Quality
	w, h    int
	divisor int // 1, 2 or 4: the size is the camera's divided by it
}

// layerSpecs turns encoder.layers into the layers of a w x h camera, the largest first: full,
// half and quarter size (even sizes). auto is 3 layers from 1280x720 up, 2 from 640x360 up,
// else 1; a number of layers is cut to those at least config.MinLayerSize a side.
func layerSpecs(setting string, w, h int) []layerSpec {
	n := 1
	switch {
	case setting == "auto" && w >= 1280 && h >= 720:
		n = 3
	case setting == "auto" && w >= 640 && h >= 360:
		n = 2
	case setting != "auto":
		if v, err := strconv.Atoi(setting); err == nil && v >= 1 && v <= 3 {
			n = v
		}
	}
	qualities := []pipeline.Quality{pipeline.QualityHigh, pipeline.QualityMedium, pipeline.QualityLow}
	var out []layerSpec
	for i := range n {
		d := 1 << i
		lw, lh := (w/d)&^1, (h/d)&^1
		if i > 0 && (lw < config.MinLayerSize || lh < config.MinLayerSize) {
			break
		}
		out = append(out, layerSpec{quality: qualities[i], w: lw, h: lh, divisor: d})
	}
	return out
}

// idleEncoder is how long a software encoder, of any layer, stays open without frames.
const idleEncoder = 30 * time.Second

// layerBitrate is a layer's share of the configured bitrate: a third at half size, a tenth at
// quarter size (bits per pixel rise as pictures shrink), never below 100 kbit/s.
func layerBitrate(bps, divisor int) int {
	switch divisor {
	case 1:
		return bps
	case 2:
		return max(100_000, bps/3)
	}
	return max(100_000, bps/10)
}

// layers is the layered encode of the camera: the configs the pipeline takes and what must be
// closed after it stopped.
type layers struct {
	configs []pipeline.LayerConfig
	closers []func() error
	summary string // for the log: "1280x720 openh264, 640x360 ..."
}

// Close closes the layers' encoders (not the top one, which run closes) after the pipeline
// has stopped.
func (l *layers) Close() error {
	var errs []error
	for _, c := range l.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// openLayers makes the layers of the camera: the top one encodes with top (the encoder
// openEncoder chose), each smaller one with an encoder of its own of the same kind (hardware
// when top is, else openh264; software when the hardware one fails to open) and a scaler: a
// memory-to-memory scaler that takes the camera's frames when the machine has one, else
// software. It says what it made, and why, in one log line.
//
// Each layer's Sink is left unset here: cameraTrack gives every layer the SFU track layer of
// the same rid, so a viewer (or a cascade link) subscribed to "q", "h" or "f" receives that
// layer, and the SFU's dynacast turns a layer nobody receives off with Layer.SetActive.
func openLayers(c config.Encoder, src source, top encoder.Encoder, log *slog.Logger) (*layers, error) {
	specs := layerSpecs(c.Layers, src.width, src.height)
	out := &layers{}
	out.configs = append(out.configs, pipeline.LayerConfig{Quality: specs[0].quality, Width: specs[0].w, Height: specs[0].h, Encoder: top})
	parts := []string{fmt.Sprintf("%s %dx%d %s", specs[0].quality.RID(), specs[0].w, specs[0].h, top.Name())}
	if len(specs) == 1 {
		out.summary = parts[0]
		return out, nil
	}
	var sizes [][2]int
	for _, s := range specs[1:] {
		sizes = append(sizes, [2]int{s.w, s.h})
	}
	devices, err := probe.Discover()
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		log.Warn("probing for hardware scalers failed", "err", err)
	}
	sc := probe.ChooseScaler(src.format, src.width, src.height, sizes, devices)
	_, hardwareEncoder := top.(*v4l2m2m.Encoder)
	hwChoice, _ := probe.Choose(src.format, src.width, src.height, devices, c.Backend)
	for _, s := range specs[1:] {
		lc := pipeline.LayerConfig{Quality: s.quality, Width: s.w, Height: s.h}
		in := src.format // what the layer's encoder gets: the scaler keeps the camera's layout
		scalerName := "software scaler"
		if sc.Device != "" {
			hw, err := v4l2m2m.NewScaler(v4l2m2m.ScalerOptions{Device: sc.Device, OutputFormat: sc.Output,
				Log: log.With("component", "scaler", "layer", s.quality.String())})
			if err != nil {
				log.Warn("hardware scaler failed to open; the layer scales in software", "layer", s.quality, "device", sc.Device, "err", err)
			} else {
				lc.Scaler, in, scalerName = hw, sc.Output, hw.Name()
			}
		}
		ecfg := encoder.Config{Width: s.w, Height: s.h, FPS: src.fps, BitrateBps: layerBitrate(c.BitrateKbps*1000, s.divisor),
			KeyframeInterval: c.KeyframeInterval}
		var enc encoder.Encoder
		if hardwareEncoder && hwChoice.Backend == probe.BackendHardware {
			e, err := v4l2m2m.New(ecfg, v4l2m2m.Options{Device: hwChoice.Device, InputFormat: in,
				Log: log.With("component", "encoder", "layer", s.quality.String())})
			if err != nil {
				log.Warn("hardware encoder failed to open for a layer; it encodes in software", "layer", s.quality, "err", err)
			} else {
				enc = e
			}
		}
		if enc == nil {
			// It opens when the layer is first wanted and closes when nobody has wanted it
			// for a while: a paused layer costs no memory (opening one at start and closing
			// it would leave its memory in the C allocator).
			enc = encoder.NewLazy(openh264.Name, idleEncoder, func() (encoder.Encoder, error) { return openh264.New(ecfg) })
		}
		lc.Encoder = enc
		out.closers = append(out.closers, enc.Close)
		out.configs = append(out.configs, lc)
		parts = append(parts, fmt.Sprintf("%s %dx%d %s via %s", s.quality.RID(), s.w, s.h, enc.Name(), scalerName))
	}
	out.summary = strings.Join(parts, ", ")
	log.Info("simulcast layers", "layers", out.summary, "scaler", scalerLine(sc), "reason", sc.Reason)
	return out, nil
}

func scalerLine(sc probe.ScalerChoice) string {
	if sc.Device == "" {
		return "software"
	}
	return fmt.Sprintf("%s (%s) %v to %v", sc.Device, sc.Card, sc.Input, sc.Output)
}

// probeLayerSizes is what `edged -probe` asks the scaler question for: the smaller layers of
// the configured camera.
func probeLayerSizes(c config.Config, w, h int) [][2]int {
	var sizes [][2]int
	for _, s := range layerSpecs(c.Encoder.Layers, w, h)[1:] {
		sizes = append(sizes, [2]int{s.w, s.h})
	}
	return sizes
}
