package yuv

import (
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

// picture fills a 4x2 frame in each layout with Y = 10+i, U = 100+i, V = 200+i per
// position, with strides wider than the rows as drivers often use.
func picture(format media.PixelFormat) *media.Frame {
	f := &media.Frame{Format: format, Width: 4, Height: 2}
	switch format {
	case media.PixelFormatI420:
		f.Planes = [3][]byte{{10, 11, 12, 13, 0, 0, 14, 15, 16, 17, 0, 0}, {100, 101, 0}, {200, 201, 0}}
		f.Strides = [3]int{6, 3, 3}
	case media.PixelFormatNV12:
		f.Planes = [3][]byte{{10, 11, 12, 13, 0, 0, 14, 15, 16, 17, 0, 0}, {100, 200, 101, 201, 0, 0}}
		f.Strides = [3]int{6, 6}
	case media.PixelFormatYUYV:
		f.Planes = [3][]byte{{10, 100, 11, 200, 12, 101, 13, 201, 0, 0, 14, 102, 15, 202, 16, 103, 17, 203, 0, 0}}
		f.Strides = [3]int{10}
	}
	return f
}

func TestConvert(t *testing.T) {
	for _, format := range []media.PixelFormat{media.PixelFormatI420, media.PixelFormatNV12, media.PixelFormatYUYV} {
		t.Run(format.String(), func(t *testing.T) {
			var dst I420
			if err := Convert(&dst, picture(format)); err != nil {
				t.Fatal(err)
			}
			if got, want := string(dst.Y), string([]byte{10, 11, 12, 13, 14, 15, 16, 17}); got != want {
				t.Errorf("Y = %v", dst.Y)
			}
			if string(dst.U) != string([]byte{100, 101}) || string(dst.V) != string([]byte{200, 201}) {
				t.Errorf("U = %v, V = %v; want [100 101] and [200 201]", dst.U, dst.V)
			}
		})
	}
}

func TestConvertRejectsShortOrOddFrames(t *testing.T) {
	short := picture(media.PixelFormatYUYV)
	short.Planes[0] = short.Planes[0][:12]
	odd := picture(media.PixelFormatI420)
	odd.Width = 3
	unknown := picture(media.PixelFormatI420)
	unknown.Format = media.PixelFormatUnknown
	for name, f := range map[string]*media.Frame{"short buffer": short, "odd width": odd, "unknown format": unknown} {
		t.Run(name, func(t *testing.T) {
			var dst I420
			if err := Convert(&dst, f); err == nil {
				t.Error("converted without an error")
			}
		})
	}
}

func TestResizeReusesMemory(t *testing.T) {
	var b I420
	b.Resize(64, 48)
	first := &b.Y[0]
	b.Resize(32, 24)
	if &b.Y[0] != first || len(b.Y) != 32*24 || len(b.U) != 16*12 {
		t.Errorf("smaller resize reallocated or sized planes wrong: Y %d U %d", len(b.Y), len(b.U))
	}
}
