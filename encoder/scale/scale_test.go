package scale

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

var formats = []media.PixelFormat{media.PixelFormatI420, media.PixelFormatNV12, media.PixelFormatYUYV, media.PixelFormatRGB24}

// newFrame makes a w x h frame of format p whose rows are padStride bytes wider than their
// content (as drivers lay them out), with every sample set by value(channel, x, y).
func newFrame(p media.PixelFormat, w, h, pad int, value func(c, x, y int) byte) *media.Frame {
	rowBytes, rows := planeGeometry(p, w, h)
	f := &media.Frame{Format: p, Width: w, Height: h}
	for i := range rowBytes {
		if rowBytes[i] == 0 {
			continue
		}
		f.Strides[i] = rowBytes[i] + pad
		f.Planes[i] = make([]byte, f.Strides[i]*rows[i])
		for j := range f.Planes[i] {
			f.Planes[i][j] = 0xee // padding a scaler must not read
		}
	}
	chans, _ := layout(p, w, h)
	for c, ch := range chans {
		for y := range ch.high {
			for x := range ch.width {
				f.Planes[ch.plane][y*f.Strides[ch.plane]+ch.off+x*ch.step] = value(c, x, y)
			}
		}
	}
	return f
}

// sample reads sample x, y of channel c.
func sample(f *media.Frame, c, x, y int) byte {
	chans, _ := layout(f.Format, f.Width, f.Height)
	ch := chans[c]
	return f.Planes[ch.plane][y*f.Strides[ch.plane]+ch.off+x*ch.step]
}

// TestKnownBlocks scales pictures made of uniform blocks: every output sample that covers
// one block only must be exactly that block's value, and a 2x2 block of four values must
// become their rounded mean.
func TestKnownBlocks(t *testing.T) {
	// Block value of channel c at block bx, by: distinct per block and channel.
	block := func(c, bx, by int) byte { return byte(16 + 40*c + 7*bx + 13*by) }
	for _, p := range formats {
		for _, tt := range []struct {
			name       string
			w, h, blk  int // source size, block size in samples of the channel
			dw, dh     int
			outPerBlck int // output samples per block along each axis
		}{
			{"half", 64, 32, 4, 32, 16, 2},
			{"quarter", 64, 32, 4, 16, 8, 1},
			{"three quarters", 64, 32, 4, 48, 24, 3},
			{"same size", 64, 32, 4, 64, 32, 4},
		} {
			t.Run(fmt.Sprintf("%v/%s", p, tt.name), func(t *testing.T) {
				f := newFrame(p, tt.w, tt.h, 6, func(c, x, y int) byte { return block(c, x/tt.blk, y/tt.blk) })
				s := New()
				out, err := s.Scale(f, tt.dw, tt.dh)
				if err != nil {
					t.Fatal(err)
				}
				if out.Format != p || out.Width != tt.dw || out.Height != tt.dh {
					t.Fatalf("got %v %dx%d", out.Format, out.Width, out.Height)
				}
				chans, _ := layout(p, tt.dw, tt.dh)
				bad := 0
				for c, ch := range chans {
					for y := range ch.high {
						for x := range ch.width {
							want := block(c, x/tt.outPerBlck, y/tt.outPerBlck)
							if got := sample(out, c, x, y); got != want && bad < 5 {
								bad++
								t.Errorf("channel %d sample %d,%d = %d; want the block's %d", c, x, y, got, want)
							}
						}
					}
				}
			})
		}
	}
}

func TestMeanOfFour(t *testing.T) {
	// A checkerboard of 0 and 255 halves to mid-grey; 10, 20, 30, 41 to round(25.25) = 25.
	for _, p := range formats {
		t.Run(p.String(), func(t *testing.T) {
			f := newFrame(p, 8, 8, 0, func(c, x, y int) byte {
				if c == 0 {
					return byte(255 * ((x + y) % 2))
				}
				return [4]byte{10, 20, 30, 41}[x%2+2*(y%2)]
			})
			out, err := New().Scale(f, 4, 4)
			if err != nil {
				t.Fatal(err)
			}
			if got := sample(out, 0, 1, 1); got != 128 {
				t.Errorf("checkerboard halves to %d; want 128", got)
			}
			if got := sample(out, 1, 0, 0); got != 25 {
				t.Errorf("10, 20, 30, 41 halve to %d; want 25", got)
			}
		})
	}
}

// reference is the area filter in floating point, sample by sample: the mean of the source
// area an output sample covers.
func reference(f *media.Frame, c, sw, sh, dw, dh, x, y int) float64 {
	fx, fy := float64(sw)/float64(dw), float64(sh)/float64(dh)
	x0, x1, y0, y1 := float64(x)*fx, float64(x+1)*fx, float64(y)*fy, float64(y+1)*fy
	var sum float64
	for sy := int(y0); float64(sy) < y1 && sy < sh; sy++ { // sy < sh: float rounding at the edge
		wy := math.Min(y1, float64(sy+1)) - math.Max(y0, float64(sy))
		for sx := int(x0); float64(sx) < x1 && sx < sw; sx++ {
			wx := math.Min(x1, float64(sx+1)) - math.Max(x0, float64(sx))
			sum += wx * wy * float64(sample(f, c, sx, sy))
		}
	}
	return sum / (fx * fy)
}

// TestAgainstReference scales noise to sizes of every kind and compares each sample with
// the floating-point area filter: at most 1 off (fixed-point rounding).
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Same size, half, quarter (the fast paths), and sizes only the area filter makes.
	sizes := [][2]int{{320, 176}, {160, 88}, {80, 44}, {222, 124}, {318, 174}, {100, 46}, {2, 2}}
	for _, p := range formats {
		f := newFrame(p, 320, 176, 10, func(c, x, y int) byte { return byte(rng.IntN(256)) })
		for _, sz := range sizes {
			if sz[1]%2 != 0 {
				continue
			}
			t.Run(fmt.Sprintf("%v/%dx%d", p, sz[0], sz[1]), func(t *testing.T) {
				out, err := New().Scale(f, sz[0], sz[1])
				if err != nil {
					t.Fatal(err)
				}
				src, _ := layout(p, f.Width, f.Height)
				dst, _ := layout(p, sz[0], sz[1])
				worst := 0.0
				for c := range dst {
					for y := range dst[c].high {
						for x := range dst[c].width {
							want := reference(f, c, src[c].width, src[c].high, dst[c].width, dst[c].high, x, y)
							worst = math.Max(worst, math.Abs(float64(sample(out, c, x, y))-want))
						}
					}
				}
				if worst > 1 {
					t.Errorf("a sample is %.2f away from the exact area mean; want at most 1", worst)
				}
			})
		}
	}
}

func TestNoAllocationAfterWarmUp(t *testing.T) {
	for _, p := range formats {
		t.Run(p.String(), func(t *testing.T) {
			// Every path: copy, half, quarter, area. Allocation does not depend on the size.
			f := newFrame(p, 320, 176, 0, func(c, x, y int) byte { return byte(x ^ y) })
			s := New()
			sizes := [][2]int{{320, 176}, {160, 88}, {80, 44}, {240, 132}}
			for _, sz := range sizes { // warm up: buffers and tables for every size
				if _, err := s.Scale(f, sz[0], sz[1]); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(5, func() {
				for _, sz := range sizes {
					if _, err := s.Scale(f, sz[0], sz[1]); err != nil {
						t.Fatal(err)
					}
				}
			})
			if allocs != 0 {
				t.Errorf("%.0f allocations per run after warm-up; want 0", allocs)
			}
		})
	}
}

func TestRejects(t *testing.T) {
	good := func() *media.Frame {
		return newFrame(media.PixelFormatI420, 16, 16, 0, func(c, x, y int) byte { return 0 })
	}
	short := good()
	short.Planes[2] = short.Planes[2][:10]
	unknown := good()
	unknown.Format = media.PixelFormatUnknown
	for _, tt := range []struct {
		name   string
		f      *media.Frame
		w, h   int
		isSize bool
	}{
		{"upscale", good(), 32, 16, true},
		{"odd width", good(), 7, 8, true},
		{"zero height", good(), 8, 0, true},
		{"short plane", short, 8, 8, false},
		{"unknown format", unknown, 8, 8, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New().Scale(tt.f, tt.w, tt.h)
			if err == nil {
				t.Fatal("scaled without an error")
			}
			if errors.Is(err, ErrSize) != tt.isSize {
				t.Errorf("error %q: errors.Is(ErrSize) = %v, want %v", err, !tt.isSize, tt.isSize)
			}
		})
	}
}

// BenchmarkScale reports ns per frame and MB/s of source read for the layer sizes of a
// 720p camera.
func BenchmarkScale(b *testing.B) {
	for _, p := range []media.PixelFormat{media.PixelFormatI420, media.PixelFormatNV12, media.PixelFormatYUYV} {
		f := newFrame(p, 1280, 720, 0, func(c, x, y int) byte { return byte(x*3 ^ y) })
		rowBytes, rows := planeGeometry(p, 1280, 720)
		size := int64(rowBytes[0]*rows[0] + rowBytes[1]*rows[1] + rowBytes[2]*rows[2])
		for _, sz := range [][2]int{{640, 360}, {320, 180}, {960, 540}} {
			b.Run(fmt.Sprintf("%v/1280x720-%dx%d", p, sz[0], sz[1]), func(b *testing.B) {
				s := New()
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Scale(f, sz[0], sz[1]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
