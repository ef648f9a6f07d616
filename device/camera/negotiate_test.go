package camera

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

// rates maps "FOURCC WxH" to the intervals offered at that size; "*" applies to any size.
type rates map[string][]rateRange

func mkOffer(r rates, formats ...formatOffer) offer {
	return offer{
		formats: formats,
		rates: func(f fourCC, w, h int) []rateRange {
			if rs, ok := r[fmt.Sprintf("%s %dx%d", f, w, h)]; ok {
				return rs
			}
			return r["*"]
		},
	}
}

func fo(f fourCC, sizes ...sizeRange) formatOffer { return formatOffer{fourcc: f, sizes: sizes} }

func fps(list ...uint32) []rateRange {
	var rs []rateRange
	for _, f := range list {
		rs = append(rs, discreteRate(1, f))
	}
	return rs
}

var (
	vga   = discreteSize(640, 480)
	hd    = discreteSize(1280, 720)
	sxga  = discreteSize(1280, 960)
	fhd   = discreteSize(1920, 1080)
	std30 = rates{"*": fps(30, 25, 15)}
)

func want720(format string) Config {
	return Config{Device: "/dev/video0", Format: format, Width: 1280, Height: 720, FPS: 30}
}

func TestNegotiate(t *testing.T) {
	type result struct {
		fourcc fourCC
		w, h   int
		fps    float64
	}
	tests := []struct {
		name   string
		offer  offer
		cfg    Config
		want   result
		reason []string // substrings of the reason
		err    []error  // errors.Is targets
		errMsg []string // substrings of the error
	}{
		// Pixel format.
		{
			name:   "explicit format exact match",
			offer:  mkOffer(std30, fo(fourCCYUYV, vga, hd)),
			cfg:    want720("yuyv"),
			want:   result{fourCCYUYV, 1280, 720, 30},
			reason: []string{"exact match"},
		},
		{
			name:  "explicit format is case-insensitive",
			offer: mkOffer(std30, fo(fourCCNV12, hd)),
			cfg:   want720(" NV12 "),
			want:  result{fourCCNV12, 1280, 720, 30},
		},
		{
			name:  "explicit i420 is V4L2 YU12",
			offer: mkOffer(std30, fo(fourCCYU12, hd), fo(fourCCYUYV, hd)),
			cfg:   want720("i420"),
			want:  result{fourCCYU12, 1280, 720, 30},
		},
		{
			name:  "yu12 is accepted as i420",
			offer: mkOffer(std30, fo(fourCCYU12, hd)),
			cfg:   want720("yu12"),
			want:  result{fourCCYU12, 1280, 720, 30},
		},
		{
			name:  "explicit format wins over auto preference",
			offer: mkOffer(std30, fo(fourCCNV12, hd), fo(fourCCYUYV, hd)),
			cfg:   want720("yuyv"),
			want:  result{fourCCYUYV, 1280, 720, 30},
		},
		{
			name:   "explicit format not offered names what is",
			offer:  mkOffer(std30, fo(fourCCYUYV, hd), fo(fourCCMJPG, hd)),
			cfg:    want720("nv12"),
			err:    []error{ErrFormatNotOffered},
			errMsg: []string{"nv12 (NV12) wanted", "formats offered: YUYV, MJPG"},
		},
		{
			name:   "auto prefers NV12 over I420 and YUYV",
			offer:  mkOffer(std30, fo(fourCCYUYV, hd), fo(fourCCYU12, hd), fo(fourCCNV12, hd)),
			cfg:    want720("auto"),
			want:   result{fourCCNV12, 1280, 720, 30},
			reason: []string{"exact match; auto: NV12 preferred over YU12 1280x720@30, YUYV 1280x720@30"},
		},
		{
			name:  "auto prefers I420 over YUYV",
			offer: mkOffer(std30, fo(fourCCYUYV, hd), fo(fourCCYU12, hd)),
			cfg:   want720("auto"),
			want:  result{fourCCYU12, 1280, 720, 30},
		},
		{
			name:  "empty format means auto",
			offer: mkOffer(std30, fo(fourCCYUYV, hd), fo(fourCCNV12, hd)),
			cfg:   want720(""),
			want:  result{fourCCNV12, 1280, 720, 30},
		},
		{
			name:   "auto takes the only supported format next to MJPEG",
			offer:  mkOffer(std30, fo(fourCCMJPG, hd, fhd), fo(fourCCYUYV, vga, hd)),
			cfg:    want720("auto"),
			want:   result{fourCCYUYV, 1280, 720, 30},
			reason: []string{"exact match; auto: YUYV is the only supported format offered"},
		},
		{
			name:   "auto takes a less preferred format that fits the size better",
			offer:  mkOffer(std30, fo(fourCCNV12, vga), fo(fourCCYUYV, vga, hd)),
			cfg:    want720("auto"),
			want:   result{fourCCYUYV, 1280, 720, 30},
			reason: []string{"auto: YUYV fits better than NV12 640x480@30"},
		},
		{
			name: "auto takes a less preferred format that fits the rate better",
			offer: mkOffer(rates{"NV12 1280x720": fps(15, 10), "YUYV 1280x720": fps(30)},
				fo(fourCCNV12, hd), fo(fourCCYUYV, hd)),
			cfg:    want720("auto"),
			want:   result{fourCCYUYV, 1280, 720, 30},
			reason: []string{"auto: YUYV fits better than NV12 1280x720@15"},
		},
		{
			name:   "MJPEG-only camera",
			offer:  mkOffer(std30, fo(fourCCMJPG, hd, fhd)),
			cfg:    want720("auto"),
			err:    []error{ErrMJPEGNotSupported, ErrNoSupportedFormat},
			errMsg: []string{"MJPEG is not supported yet; formats offered: MJPG"},
		},
		{
			name:   "JPEG and H264 camera counts as MJPEG",
			offer:  mkOffer(std30, fo(fourCCJPEG, hd), fo(fourCC('H'|'2'<<8|'6'<<16|'4'<<24), hd)),
			cfg:    want720("auto"),
			err:    []error{ErrMJPEGNotSupported},
			errMsg: []string{"formats offered: JPEG, H264"},
		},
		{
			name:   "no supported format",
			offer:  mkOffer(std30, fo(fourCC('G'|'R'<<8|'E'<<16|'Y'<<24), hd)),
			cfg:    want720("auto"),
			err:    []error{ErrNoSupportedFormat},
			errMsg: []string{"formats offered: GREY"},
		},
		{
			name:   "no formats at all",
			offer:  mkOffer(std30),
			cfg:    want720("auto"),
			err:    []error{ErrNoSupportedFormat},
			errMsg: []string{"formats offered: none"},
		},
		{
			name:   "format listed without sizes",
			offer:  mkOffer(std30, fo(fourCCYUYV)),
			cfg:    want720("auto"),
			err:    []error{ErrNoSupportedFormat},
			errMsg: []string{"no frame sizes for YUYV"},
		},
		{
			name:   "unknown format name",
			offer:  mkOffer(std30, fo(fourCCYUYV, hd)),
			cfg:    want720("rgb24"),
			err:    []error{ErrInvalidConfig},
			errMsg: []string{`"rgb24"`},
		},
		{
			name:  "zero size",
			offer: mkOffer(std30, fo(fourCCYUYV, hd)),
			cfg:   Config{Format: "auto", Width: 0, Height: 720, FPS: 30},
			err:   []error{ErrInvalidConfig},
		},
		{
			name:  "zero rate",
			offer: mkOffer(std30, fo(fourCCYUYV, hd)),
			cfg:   Config{Format: "auto", Width: 1280, Height: 720},
			err:   []error{ErrInvalidConfig},
		},

		// Frame size.
		{
			name:   "smallest size covering the wanted one",
			offer:  mkOffer(std30, fo(fourCCYUYV, discreteSize(2560, 1440), fhd, vga, sxga)),
			cfg:    want720("yuyv"),
			want:   result{fourCCYUYV, 1280, 960, 30},
			reason: []string{"1280x720 not offered; 1280x960 is the smallest size covering it", "fps exact"},
		},
		{
			name:   "largest when nothing covers",
			offer:  mkOffer(std30, fo(fourCCYUYV, discreteSize(320, 240), vga, discreteSize(800, 448))),
			cfg:    want720("yuyv"),
			want:   result{fourCCYUYV, 800, 448, 30},
			reason: []string{"nothing offered covers 1280x720; 800x448 is the largest"},
		},
		{
			name:   "covering needs both axes",
			offer:  mkOffer(std30, fo(fourCCYUYV, discreteSize(1920, 480), discreteSize(1024, 1024), fhd)),
			cfg:    want720("yuyv"),
			want:   result{fourCCYUYV, 1920, 1080, 30},
			reason: []string{"1920x1080 is the smallest size covering it"},
		},
		{
			name: "stepwise size on the grid is exact",
			offer: mkOffer(std30, fo(fourCCNV12,
				sizeRange{minW: 32, maxW: 4096, stepW: 16, minH: 32, maxH: 3072, stepH: 16})),
			cfg:    want720("nv12"),
			want:   result{fourCCNV12, 1280, 720, 30},
			reason: []string{"exact match"},
		},
		{
			name: "stepwise size snapped up to the step",
			offer: mkOffer(std30, fo(fourCCNV12,
				sizeRange{minW: 16, maxW: 4096, stepW: 16, minH: 16, maxH: 3072, stepH: 16})),
			cfg:    Config{Format: "nv12", Width: 1281, Height: 721, FPS: 30},
			want:   result{fourCCNV12, 1296, 736, 30},
			reason: []string{"1281x721 not offered; 1296x736 is the smallest size covering it"},
		},
		{
			name: "stepwise size below the minimum takes the minimum",
			offer: mkOffer(std30, fo(fourCCNV12,
				sizeRange{minW: 1920, maxW: 4096, stepW: 64, minH: 1080, maxH: 2160, stepH: 8})),
			cfg:  want720("nv12"),
			want: result{fourCCNV12, 1920, 1080, 30},
		},
		{
			name: "stepwise size above the maximum takes the largest grid point",
			offer: mkOffer(std30, fo(fourCCNV12,
				sizeRange{minW: 16, maxW: 1000, stepW: 16, minH: 16, maxH: 600, stepH: 16})),
			cfg:    want720("nv12"),
			want:   result{fourCCNV12, 992, 592, 30},
			reason: []string{"nothing offered covers 1280x720; 992x592 is the largest"},
		},
		{
			name: "continuous size is exact",
			offer: mkOffer(std30, fo(fourCCYUYV,
				sizeRange{minW: 2, maxW: 8192, stepW: 1, minH: 2, maxH: 8192, stepH: 1})),
			cfg:  Config{Format: "yuyv", Width: 1366, Height: 768, FPS: 30},
			want: result{fourCCYUYV, 1366, 768, 30},
		},
		{
			name: "discrete and stepwise sizes compete on area",
			offer: mkOffer(std30, fo(fourCCYUYV, fhd,
				sizeRange{minW: 640, maxW: 1280, stepW: 640, minH: 480, maxH: 960, stepH: 480})),
			cfg:  want720("yuyv"),
			want: result{fourCCYUYV, 1280, 960, 30},
		},

		// Frame rate.
		{
			name:   "closest rate below the wanted one",
			offer:  mkOffer(rates{"*": fps(60, 25, 15)}, fo(fourCCYUYV, hd)),
			cfg:    want720("yuyv"),
			want:   result{fourCCYUYV, 1280, 720, 25},
			reason: []string{"size exact", "30 fps not offered; 25 is the closest below"},
		},
		{
			name:   "slowest rate above when none is at or below",
			offer:  mkOffer(rates{"*": fps(60, 30, 15)}, fo(fourCCYUYV, hd)),
			cfg:    Config{Format: "yuyv", Width: 1280, Height: 720, FPS: 10},
			want:   result{fourCCYUYV, 1280, 720, 15},
			reason: []string{"nothing at or below 10 fps; 15 is the slowest offered"},
		},
		{
			name:   "NTSC rate is below 30",
			offer:  mkOffer(rates{"*": {discreteRate(1001, 30000), discreteRate(1, 60)}}, fo(fourCCYUYV, hd)),
			cfg:    want720("yuyv"),
			want:   result{fourCCYUYV, 1280, 720, 30000.0 / 1001},
			reason: []string{"29.97 is the closest below"},
		},
		{
			name:  "rates are those of the chosen size",
			offer: mkOffer(rates{"YUYV 1280x720": fps(10, 5), "YUYV 640x480": fps(30)}, fo(fourCCYUYV, vga, hd)),
			cfg:   want720("yuyv"),
			want:  result{fourCCYUYV, 1280, 720, 10},
		},
		{
			name: "stepwise interval on the grid is exact",
			offer: mkOffer(rates{"*": {{min: fract{1, 60}, max: fract{1, 5}, step: fract{1, 60}}}},
				fo(fourCCYUYV, hd)),
			cfg:    want720("yuyv"),
			want:   result{fourCCYUYV, 1280, 720, 30},
			reason: []string{"exact match"},
		},
		{
			name: "stepwise interval snapped to the rate below",
			offer: mkOffer(rates{"*": {{min: fract{1, 60}, max: fract{1, 5}, step: fract{1, 60}}}},
				fo(fourCCYUYV, hd)),
			cfg:    Config{Format: "yuyv", Width: 1280, Height: 720, FPS: 25},
			want:   result{fourCCYUYV, 1280, 720, 20},
			reason: []string{"25 fps not offered; 20 is the closest below"},
		},
		{
			name: "stepwise interval range slower than wanted takes its fastest",
			offer: mkOffer(rates{"*": {{min: fract{1, 15}, max: fract{1, 1}, step: fract{1, 15}}}},
				fo(fourCCYUYV, hd)),
			cfg:  want720("yuyv"),
			want: result{fourCCYUYV, 1280, 720, 15},
		},
		{
			name: "stepwise interval range faster than wanted takes its slowest",
			offer: mkOffer(rates{"*": {{min: fract{1, 120}, max: fract{1, 60}, step: fract{1, 120}}}},
				fo(fourCCYUYV, hd)),
			cfg:  want720("yuyv"),
			want: result{fourCCYUYV, 1280, 720, 60},
		},
		{
			name:  "continuous interval range is exact",
			offer: mkOffer(rates{"*": {{min: fract{1, 120}, max: fract{1, 1}}}}, fo(fourCCYUYV, hd)),
			cfg:   want720("yuyv"),
			want:  result{fourCCYUYV, 1280, 720, 30},
		},
		{
			name:   "no rates listed requests the wanted rate",
			offer:  mkOffer(rates{}, fo(fourCCNV12, hd)),
			cfg:    want720("nv12"),
			want:   result{fourCCNV12, 1280, 720, 30},
			reason: []string{"size exact; device lists no frame intervals; requesting 30 fps"},
		},
		{
			name:  "bogus zero intervals are ignored",
			offer: mkOffer(rates{"*": {discreteRate(0, 30), discreteRate(1, 0), discreteRate(1, 25)}}, fo(fourCCYUYV, hd)),
			cfg:   want720("yuyv"),
			want:  result{fourCCYUYV, 1280, 720, 25},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := negotiate(tt.offer, tt.cfg)
			if len(tt.err) > 0 {
				if err == nil {
					t.Fatalf("got %+v, want error", got)
				}
				for _, target := range tt.err {
					if !errors.Is(err, target) {
						t.Errorf("error %q does not match %v", err, target)
					}
				}
				for _, s := range tt.errMsg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			r := result{got.fourcc, got.width, got.height, got.fps}
			if r.fourcc != tt.want.fourcc || r.w != tt.want.w || r.h != tt.want.h || !near(r.fps, tt.want.fps) {
				t.Errorf("got %s %dx%d@%g, want %s %dx%d@%g", r.fourcc, r.w, r.h, r.fps,
					tt.want.fourcc, tt.want.w, tt.want.h, tt.want.fps)
			}
			for _, s := range tt.reason {
				if !strings.Contains(got.reason, s) {
					t.Errorf("reason %q does not contain %q", got.reason, s)
				}
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }

func TestFourCC(t *testing.T) {
	tests := []struct {
		f    fourCC
		name string
		pix  media.PixelFormat
	}{
		{fourCCYUYV, "YUYV", media.PixelFormatYUYV},
		{fourCCNV12, "NV12", media.PixelFormatNV12},
		{fourCCYU12, "YU12", media.PixelFormatI420},
		{fourCCMJPG, "MJPG", media.PixelFormatUnknown},
		{fourCC('Y' | '1'<<8 | '0'<<16 | ' '<<24), "Y10", media.PixelFormatUnknown},
		{fourCC(0x00000001), "0x00000001", media.PixelFormatUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.String(); got != tt.name {
				t.Errorf("String() = %q, want %q", got, tt.name)
			}
			if got := tt.f.pixelFormat(); got != tt.pix {
				t.Errorf("pixelFormat() = %v, want %v", got, tt.pix)
			}
		})
	}
}

func TestOfferString(t *testing.T) {
	o := mkOffer(nil, fo(fourCCYUYV, vga, hd),
		fo(fourCCNV12, sizeRange{minW: 16, maxW: 1920, stepW: 16, minH: 16, maxH: 1080, stepH: 8}))
	want := "YUYV: 640x480 1280x720; NV12: [16-1920/16]x[16-1080/8]"
	if got := o.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
