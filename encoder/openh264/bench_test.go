//go:build cgo

package openh264

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/cpustat"
)

// BenchmarkEncode encodes the test pattern as fast as it goes and reports frames per second
// and CPU per frame. The test pattern is I420, which the encoder takes without a copy.
func BenchmarkEncode(b *testing.B) {
	for _, size := range [][2]int{{640, 480}, {1280, 720}} {
		b.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(b *testing.B) {
			enc, src := newTestEncoder(b, size[0], size[1], 2000)
			t0 := time.Now()
			cpu0 := cpustat.Process()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := enc.Encode(src.Draw(uint64(i), t0.Add(time.Duration(i)*time.Second/30))); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(t0)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "frames/s")
			b.ReportMetric(float64((cpustat.Process()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/frame")
		})
	}
}
