package probe

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

// Fake scalers, after what the drivers report.
func piISP() Device {
	return Device{Path: "/dev/video12", Driver: "bcm2835-codec", Card: "bcm2835-codec-isp", Kind: KindConverter,
		Output:  formats(false, []Size{{64, 16384, 2, 64, 16384, 2}}, FourCCYUV420, FourCCNV12, FourCCYUYV, rgb3),
		Capture: formats(false, []Size{{64, 16384, 2, 64, 16384, 2}}, FourCCYUV420, FourCCNV12, rgb3)}
}

func vim2m() Device {
	rgb565 := FourCC('R' | 'G'<<8 | 'B'<<16 | 'P'<<24)
	return Device{Path: "/dev/video3", Driver: "vim2m", Card: "vim2m", Kind: KindConverter,
		Output:  formats(false, []Size{{32, 640, 2, 32, 480, 1}}, rgb565, rgb3),
		Capture: formats(false, []Size{{32, 640, 2, 32, 480, 1}}, rgb565, rgb3, FourCCYUYV)}
}

func TestChooseScaler(t *testing.T) {
	layers := [][2]int{{640, 360}, {320, 180}}
	for _, tt := range []struct {
		name      string
		cam       media.PixelFormat
		w, h      int
		sizes     [][2]int
		devices   []Device
		device    string
		out       media.PixelFormat
		reasonHas []string
	}{
		{"none", media.PixelFormatYUYV, 1280, 720, layers, []Device{piEncoder(), vividCamera()}, "", 0,
			[]string{"no memory-to-memory scaler on this machine"}},
		{"pi ISP, YUYV camera to I420", media.PixelFormatYUYV, 1280, 720, layers, []Device{piEncoder(), piISP()}, "/dev/video12", media.PixelFormatI420,
			[]string{"/dev/video12 (bcm2835-codec-isp) scales the camera's YUYV to I420"}},
		{"pi ISP keeps NV12", media.PixelFormatNV12, 1280, 720, layers, []Device{piISP()}, "/dev/video12", media.PixelFormatNV12, nil},
		{"vim2m takes no YUV", media.PixelFormatYUYV, 640, 480, [][2]int{{320, 240}}, []Device{vim2m()}, "", 0,
			[]string{"no scaler takes 640x480 YUYV", "/dev/video3 (vim2m): takes RGBP RGB3, not the camera's YUYV"}},
		{"vim2m too small for 720p", media.PixelFormatRGB24, 1280, 720, layers, []Device{vim2m()}, "", 0,
			[]string{"takes RGB3 at 32x32..640x480, not 1280x720"}},
		{"vim2m RGB at VGA", media.PixelFormatRGB24, 640, 480, [][2]int{{320, 240}}, []Device{vim2m(), piISP()}, "/dev/video3", media.PixelFormatRGB24, nil},
		{"skips a scaler that cannot make a size", media.PixelFormatRGB24, 640, 480, [][2]int{{16, 12}}, []Device{vim2m(), piISP()}, "", 0,
			[]string{"makes RGB3 at 32x32..640x480, not 16x12", "/dev/video12"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ChooseScaler(tt.cam, tt.w, tt.h, tt.sizes, tt.devices)
			if c.Device != tt.device || (tt.device != "" && c.Output != tt.out) {
				t.Errorf("chose %q making %v (%s); want %q making %v", c.Device, c.Output, c.Reason, tt.device, tt.out)
			}
			for _, s := range tt.reasonHas {
				if !strings.Contains(c.Reason, s) {
					t.Errorf("reason %q lacks %q", c.Reason, s)
				}
			}
		})
	}
}

func TestWriteScalers(t *testing.T) {
	devs := []Device{vim2m(), piISP(), piEncoder()}
	c := ChooseScaler(media.PixelFormatYUYV, 1280, 720, [][2]int{{640, 360}, {320, 180}}, devs)
	var b bytes.Buffer
	if err := WriteScalers(&b, Scalers(devs), c); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"MEMORY-TO-MEMORY SCALERS", "VERDICT for 1280x720 YUYV to 640x360, 320x180",
		"/dev/video3", "takes RGBP RGB3, not the camera's YUYV",
		"CHOSEN: scales the camera's YUYV to I420",
		"SCALER: hardware, /dev/video12 (bcm2835-codec-isp), YUYV to I420",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "/dev/video11") {
		t.Errorf("the encoder is listed among scalers:\n%s", out)
	}
	b.Reset()
	if err := WriteScalers(&b, nil, ChooseScaler(media.PixelFormatYUYV, 1280, 720, [][2]int{{640, 360}}, nil)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "SCALER: software (encoder/scale)\n  why: no memory-to-memory scaler on this machine") {
		t.Errorf("without scalers:\n%s", b.String())
	}
}
