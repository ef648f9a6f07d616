//go:build vboardguest && linux && cgo

package pipeline

// Runs inside the virtual board (internal/vboard): layers scaled by vim2m, the kernel's
// virtual memory-to-memory scaler, chosen through encoder/probe as edged chooses it. vim2m in
// Linux 6.1 takes RGB only, up to 640x480, so the source draws RGB24; a 720p source is beyond
// it, and the layers must fall back to the software scaler with nothing lost.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeflux/edge/encoder/probe"
	"github.com/edgeflux/edge/encoder/scale"
	"github.com/edgeflux/edge/encoder/v4l2m2m"
	"github.com/edgeflux/edge/internal/media"
)

// rgbSource emits n RGB24 frames of 16x16 coloured checkers that move 16 pixels a frame, every
// interval; it keeps a copy of each for the test to compare with.
type rgbSource struct {
	w, h, n  int
	interval time.Duration
	mu       sync.Mutex
	sent     []*media.Frame
}

func (s *rgbSource) draw(seq int) *media.Frame {
	f := &media.Frame{Format: media.PixelFormatRGB24, Width: s.w, Height: s.h, Seq: uint64(seq), Strides: [3]int{3 * s.w}}
	f.Planes[0] = make([]byte, 3*s.w*s.h)
	for y := range s.h {
		for x := range s.w {
			c := ((x+16*seq)/16 + y/16) % 6
			p := f.Planes[0][3*(y*s.w+x):]
			p[0], p[1], p[2] = byte(40*c), byte(255-40*c), byte(20+30*((c*5)%6))
		}
	}
	return f
}

func (s *rgbSource) Run(ctx context.Context, emit func(*media.Frame)) error {
	for i := range s.n {
		f := s.draw(i)
		keep := *f
		keep.Planes[0] = bytes.Clone(f.Planes[0])
		s.mu.Lock()
		s.sent = append(s.sent, &keep)
		s.mu.Unlock()
		emit(f)
		clear(f.Planes[0]) // the camera's buffer is requeued: nothing may read it now
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.interval):
		}
	}
	<-ctx.Done()
	return nil
}

// pictureEncoder keeps a copy of every picture it is given.
type pictureEncoder struct {
	fakeEncoder
	mu   sync.Mutex
	pics []*media.Frame
}

func (e *pictureEncoder) Encode(f *media.Frame) (media.AccessUnit, error) {
	keep := *f
	rows := f.Height
	keep.Planes[0] = bytes.Clone(f.Planes[0][:f.Strides[0]*(rows-1)+3*f.Width])
	e.mu.Lock()
	e.pics = append(e.pics, &keep)
	e.mu.Unlock()
	return e.fakeEncoder.Encode(f)
}

func same(a, b *media.Frame) bool {
	for y := range a.Height {
		if !bytes.Equal(a.Planes[0][y*a.Strides[0]:y*a.Strides[0]+3*a.Width], b.Planes[0][y*b.Strides[0]:y*b.Strides[0]+3*b.Width]) {
			return false
		}
	}
	return true
}

func TestVBoardLayersScaledByVim2m(t *testing.T) {
	if os.Getenv("VBOARD") != "1" {
		t.Skip("runs in the virtual board only")
	}
	devices, err := probe.Discover()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		w, h     int
		hardware bool
	}{{640, 480, true}, {1280, 720, false}} {
		t.Run(fmt.Sprintf("%dx%d", tc.w, tc.h), func(t *testing.T) {
			sizes := [][2]int{{tc.w / 2, tc.h / 2}, {tc.w / 4, tc.h / 4}}
			choice := probe.ChooseScaler(media.PixelFormatRGB24, 640, 480, sizes, devices)
			if choice.Device == "" {
				t.Skipf("no scaler for RGB24 640x480: %s", choice.Reason)
			}
			t.Logf("scaler: %s (%s)", choice.Device, choice.Reason)
			const frames = 15
			src := &rgbSource{w: tc.w, h: tc.h, n: frames, interval: 150 * time.Millisecond}
			encs := map[Quality]*pictureEncoder{}
			var cfgs []LayerConfig
			for i, q := range []Quality{QualityHigh, QualityMedium, QualityLow} {
				encs[q] = &pictureEncoder{}
				lc := LayerConfig{Quality: q, Width: tc.w >> i, Height: tc.h >> i, Encoder: encs[q]}
				if i > 0 {
					sc, err := v4l2m2m.NewScaler(v4l2m2m.ScalerOptions{Device: choice.Device, OutputFormat: choice.Output, Timeout: 10 * time.Second})
					if err != nil {
						t.Fatal(err)
					}
					lc.Scaler = sc
				}
				cfgs = append(cfgs, lc)
			}
			var logs bytes.Buffer
			p := New(Config{Source: src, Layers: cfgs, Log: newTextLogger(&logs)})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { p.Run(ctx); close(done) }()
			deadline := time.Now().Add(time.Minute)
			for p.Layer(QualityLow).Status().Encoded < frames && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			cancel()
			<-done
			t.Log(strings.TrimSpace(logs.String()))

			soft := scale.New()
			for _, l := range p.Layers() {
				st := l.Status()
				e := encs[l.Quality()]
				t.Logf("layer %s %dx%d: %d frames, %d dropped, scaled by %q", l.RID(), st.Width, st.Height, len(e.pics), st.Dropped, st.Scaler)
				if len(e.pics) != frames || st.Dropped != 0 {
					t.Errorf("layer %s encoded %d of %d frames (%d dropped)", l.RID(), len(e.pics), frames, st.Dropped)
				}
				if l.Quality() != QualityHigh {
					hw := strings.HasPrefix(st.Scaler, "v4l2m2m "+choice.Device)
					if hw != tc.hardware || (!tc.hardware && st.Scaler != "software") {
						t.Errorf("layer %s scaled by %q; want hardware %v", l.RID(), st.Scaler, tc.hardware)
					}
				}
				for i, pic := range e.pics {
					want, err := soft.Scale(src.sent[pic.Seq], st.Width, st.Height)
					if err != nil {
						t.Fatal(err)
					}
					if pic.Format != media.PixelFormatRGB24 || !same(pic, want) {
						t.Errorf("layer %s picture %d (frame %d) differs from the software scaler's", l.RID(), i, pic.Seq)
						break
					}
				}
			}
			if !tc.hardware && !strings.Contains(logs.String(), "hardware scaler failed; this layer scales in software from now on") {
				t.Error("no log line about the hardware scaler handing over to software")
			}
		})
	}
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
