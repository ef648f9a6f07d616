//go:build cgo

package main

import (
	"context"
	"testing"
	"time"

	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/openh264"
	"github.com/edgeflux/edge/internal/cpustat"
	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/pipeline"
)

// BenchmarkCaptureToRTP720p30 runs the daemon's real pipeline (test-pattern camera paced at
// 30 fps, openh264 at 2 Mbit/s, the edge track's packetizer) for b.N frames in real time and
// reports the achieved frame rate, CPU per frame and the latency from capture to the first RTP
// packet of each picture. Run it with -benchtime 300x (10 s).
func BenchmarkCaptureToRTP720p30(b *testing.B) {
	const w, h, fps = 1280, 720, 30
	src, err := testpattern.New(testpattern.Config{Width: w, Height: h, FPS: fps})
	if err != nil {
		b.Fatal(err)
	}
	enc, err := openh264.New(encoder.Config{Width: w, Height: h, FPS: fps, BitrateBps: 2_000_000, KeyframeInterval: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	limited := &frameLimit{src: src, n: b.N}
	p := pipeline.New(pipeline.Config{Source: limited, Encoder: enc})
	track := cameraTrack(p, w, h).Layers()[0]
	p.Top().SetActive(true) // as a viewer would: with nobody watching nothing is encoded

	cpu0 := cpustat.Process()
	t0 := time.Now()
	b.ResetTimer()
	_ = p.Run(limited.ctx())
	elapsed := time.Since(t0)
	b.StopTimer()

	lat := track.CaptureToRTP()
	b.ReportMetric(float64(p.Status().Encoded)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64((cpustat.Process()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/frame")
	b.ReportMetric(float64(lat.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat.P99.Microseconds())/1000, "p99-ms")
}

// frameLimit stops the pipeline after n frames.
type frameLimit struct {
	src    pipeline.Source
	n      int
	cancel context.CancelFunc
	c      context.Context
}

func (f *frameLimit) ctx() context.Context {
	f.c, f.cancel = context.WithCancel(context.Background())
	return f.c
}

func (f *frameLimit) Run(ctx context.Context, emit func(*media.Frame)) error {
	seen := 0
	return f.src.Run(ctx, func(fr *media.Frame) {
		if seen == f.n {
			f.cancel()
			return
		}
		seen++
		emit(fr)
	})
}
