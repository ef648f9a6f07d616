//go:build cgo

package main

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/openh264"
	"github.com/edgeflux/edge/encoder/scale"
	"github.com/edgeflux/edge/internal/config"
	"github.com/edgeflux/edge/internal/cpustat"
	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/pipeline"
)

type countSink struct{ n atomic.Int64 }

func (c *countSink) WriteAccessUnit(media.AccessUnit) { c.n.Add(1) }

// BenchmarkLayers720p30 runs the daemon's layered pipeline (openLayers, as edged builds it) on
// the test-pattern camera paced at 720p30 with openh264 for 1, 2 and 3 layers, every layer
// active, for b.N frames in real time. It reports the frame rate each layer achieved, the
// frames the smaller layers dropped, the process CPU per camera frame, and what the software
// scaler costs per frame for the smaller layers. Run it with -benchtime 300x (10 s each).
func BenchmarkLayers720p30(b *testing.B) {
	const w, h, fps = 1280, 720, 30
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("layers=%d", n), func(b *testing.B) {
			src, err := testpattern.New(testpattern.Config{Width: w, Height: h, FPS: fps})
			if err != nil {
				b.Fatal(err)
			}
			c := config.Default().Encoder
			c.Layers = fmt.Sprint(n)
			top, err := openh264.New(encoder.Config{Width: w, Height: h, FPS: fps, BitrateBps: c.BitrateKbps * 1000, KeyframeInterval: c.KeyframeInterval})
			if err != nil {
				b.Fatal(err)
			}
			defer top.Close()
			lay, err := openLayers(c, source{name: "synthetic", format: media.PixelFormatI420, width: w, height: h, fps: fps}, top, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer lay.Close()
			sinks := make([]*countSink, len(lay.configs))
			for i := range lay.configs {
				sinks[i] = &countSink{}
				lay.configs[i].Sink = sinks[i]
			}
			limited := &frameLimit{src: src, n: b.N}
			p := pipeline.New(pipeline.Config{Source: limited, Layers: lay.configs})

			cpu0 := cpustat.Process()
			t0 := time.Now()
			b.ResetTimer()
			_ = p.Run(limited.ctx())
			elapsed := time.Since(t0)
			b.StopTimer()
			cpu := cpustat.Process() - cpu0

			for i, l := range p.Layers() {
				st := l.Status()
				b.ReportMetric(float64(st.Encoded)/elapsed.Seconds(), fmt.Sprintf("fps-%s", l.RID()))
				if i < len(p.Layers())-1 {
					b.ReportMetric(float64(st.Dropped), fmt.Sprintf("dropped-%s", l.RID()))
				}
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/frame")

			// The software scaler's share: the smaller layers' pictures of one camera frame.
			frame := src.Draw(0, time.Now())
			sc := scale.New()
			for _, lc := range lay.configs[1:] { // warm up: buffers and tables
				if _, err := sc.Scale(frame, lc.Width, lc.Height); err != nil {
					b.Fatal(err)
				}
			}
			const reps = 200
			s0 := time.Now()
			for range reps {
				for _, lc := range lay.configs[1:] {
					if _, err := sc.Scale(frame, lc.Width, lc.Height); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(time.Since(s0).Microseconds())/1000/reps, "scale-ms/frame")
		})
	}
}
