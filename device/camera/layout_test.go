package camera

import (
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

func TestLayout(t *testing.T) {
	tests := []struct {
		name      string
		format    media.PixelFormat
		w, h, bpl int
		strides   []int
		offsets   []int
		size      int
		wantErr   bool
	}{
		{name: "YUYV tight", format: media.PixelFormatYUYV, w: 640, h: 480, bpl: 1280,
			strides: []int{1280}, offsets: []int{0}, size: 1280 * 480},
		{name: "YUYV padded stride", format: media.PixelFormatYUYV, w: 1280, h: 720, bpl: 2592,
			strides: []int{2592}, offsets: []int{0}, size: 2592 * 720},
		{name: "YUYV stride not reported", format: media.PixelFormatYUYV, w: 640, h: 480, bpl: 0,
			strides: []int{1280}, offsets: []int{0}, size: 1280 * 480},
		{name: "YUYV stride shorter than a row", format: media.PixelFormatYUYV, w: 640, h: 480, bpl: 640, wantErr: true},
		{name: "NV12 tight", format: media.PixelFormatNV12, w: 1280, h: 720, bpl: 1280,
			strides: []int{1280, 1280}, offsets: []int{0, 1280 * 720}, size: 1280 * 720 * 3 / 2},
		{name: "NV12 padded stride", format: media.PixelFormatNV12, w: 1920, h: 1080, bpl: 2048,
			strides: []int{2048, 2048}, offsets: []int{0, 2048 * 1080}, size: 2048*1080 + 2048*540},
		{name: "NV12 odd height rounds chroma up", format: media.PixelFormatNV12, w: 64, h: 33, bpl: 64,
			strides: []int{64, 64}, offsets: []int{0, 64 * 33}, size: 64*33 + 64*17},
		{name: "I420 tight", format: media.PixelFormatI420, w: 640, h: 480, bpl: 640,
			strides: []int{640, 320, 320}, offsets: []int{0, 640 * 480, 640*480 + 320*240}, size: 640 * 480 * 3 / 2},
		{name: "I420 padded stride", format: media.PixelFormatI420, w: 1280, h: 720, bpl: 1344,
			strides: []int{1344, 672, 672}, offsets: []int{0, 1344 * 720, 1344*720 + 672*360}, size: 1344*720 + 2*672*360},
		{name: "I420 stride shorter than a row", format: media.PixelFormatI420, w: 640, h: 480, bpl: 600, wantErr: true},
		{name: "unknown format", format: media.PixelFormatUnknown, w: 640, h: 480, wantErr: true},
		{name: "zero size", format: media.PixelFormatNV12, w: 0, h: 480, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := newLayout(tt.format, tt.w, tt.h, tt.bpl)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want error", l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.planes != len(tt.strides) || l.size != tt.size {
				t.Fatalf("planes %d size %d, want %d and %d", l.planes, l.size, len(tt.strides), tt.size)
			}
			for i := range tt.strides {
				if l.strides[i] != tt.strides[i] || l.offsets[i] != tt.offsets[i] {
					t.Errorf("plane %d: stride %d offset %d, want %d and %d",
						i, l.strides[i], l.offsets[i], tt.strides[i], tt.offsets[i])
				}
			}

			// A buffer of exactly the size fills; one byte less is refused.
			buf := make([]byte, l.size, l.size+100)
			for i := range buf {
				buf[i] = byte(i)
			}
			var f media.Frame
			if l.fill(&f, buf[:l.size-1]) {
				t.Error("short buffer filled a frame")
			}
			if f.Planes[0] != nil {
				t.Error("short buffer touched the frame")
			}
			if !l.fill(&f, buf) {
				t.Fatal("full buffer refused")
			}
			if f.Format != tt.format || f.Width != tt.w || f.Height != tt.h {
				t.Errorf("frame %v %dx%d", f.Format, f.Width, f.Height)
			}
			for i := range 3 {
				if i >= l.planes {
					if f.Planes[i] != nil || f.Strides[i] != 0 {
						t.Errorf("plane %d set for a %d-plane format", i, l.planes)
					}
					continue
				}
				p := f.Planes[i]
				if len(p) != l.lengths[i] || cap(p) != len(p) {
					t.Errorf("plane %d len %d cap %d, want both %d", i, len(p), cap(p), l.lengths[i])
				}
				if len(p) > 0 && p[0] != byte(tt.offsets[i]) {
					t.Errorf("plane %d starts at the wrong byte", i)
				}
				if f.Strides[i] != tt.strides[i] {
					t.Errorf("plane %d stride %d, want %d", i, f.Strides[i], tt.strides[i])
				}
			}
			// A larger buffer (bytesused above the need) fills too.
			if !l.fill(&f, buf[:l.size+100]) {
				t.Error("larger buffer refused")
			}
		})
	}
}
