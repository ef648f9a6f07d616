package sfu

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/internal/cpustat"
	"github.com/edgeflux/edge/internal/media"
)

// discardWriter stands in for a viewer's SRTP stream: it counts packets and drops them.
type discardWriter struct{ packets int }

func (w *discardWriter) WriteRTP(_ *rtp.Header, p []byte) (int, error) {
	w.packets++
	return len(p), nil
}
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

type fakeBinding struct {
	w    *discardWriter
	ssrc webrtc.SSRC
}

func (f fakeBinding) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: testH264, PayloadType: 102}}
}
func (f fakeBinding) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (f fakeBinding) SSRC() webrtc.SSRC                                      { return f.ssrc }
func (f fakeBinding) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (f fakeBinding) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (f fakeBinding) WriteStream() webrtc.TrackLocalWriter                   { return f.w }
func (f fakeBinding) ID() string                                             { return "bench" }
func (f fakeBinding) RTCPReader() interceptor.RTCPReader                     { return nil }

// BenchmarkFanout forwards a 2 Mbit/s, 30 fps stream (about 8 KB per picture, 7 packets) to
// many viewers and reports the edge's own cost per forwarded packet: header rewrite and
// dispatch, without SRTP and the socket write, which pion does per viewer. The SFU target is
// the whole per-viewer cost; this is the part this package controls.
func BenchmarkFanout(b *testing.B) {
	for _, viewers := range []int{1, 100, 500} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			track, layer := testTrack(func(*Layer) {})
			writers := make([]*discardWriter, viewers)
			for i := range writers {
				writers[i] = &discardWriter{}
				if _, err := NewDownTrack(track, "bench", nil).Bind(fakeBinding{w: writers[i], ssrc: webrtc.SSRC(i + 1)}); err != nil {
					b.Fatal(err)
				}
			}
			key, delta := benchAU(true), benchAU(false)
			layer.WriteAccessUnit(key) // every viewer starts on this keyframe
			cpu0 := cpustat.Process()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				layer.WriteAccessUnit(delta)
			}
			b.StopTimer()
			forwarded := 0
			for _, w := range writers {
				forwarded += w.packets
			}
			perPacket := float64((cpustat.Process() - cpu0).Nanoseconds()) / float64(forwarded)
			b.ReportMetric(perPacket, "cpu-ns/pkt/viewer")
			// 2 Mbit/s in 1200-byte packets is about 210 packets per second per viewer.
			b.ReportMetric(perPacket*210/1e9*100, "%core/viewer")
		})
	}
}

func benchAU(keyframe bool) media.AccessUnit {
	data := []byte{0, 0, 0, 1, 0x41}
	if keyframe {
		data = []byte{0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65}
	}
	data = append(data, make([]byte, 8000)...)
	for i := len(data) - 8000; i < len(data); i++ {
		data[i] = 0xa5
	}
	return media.AccessUnit{Data: data, Keyframe: keyframe, CaptureTime: time.Now()}
}
