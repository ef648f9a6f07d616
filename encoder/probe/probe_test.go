package probe

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edgeflux/edge/internal/media"

	"github.com/edgeflux/edge/internal/v4l2"
)

func formats(compressed bool, sizes []Size, codes ...FourCC) []Format {
	var out []Format
	for _, c := range codes {
		out = append(out, Format{FourCC: c, Compressed: compressed, Sizes: sizes})
	}
	return out
}

var (
	yvu420 = v4l2.MakeFourCC('Y', 'V', '1', '2')
	nv21   = v4l2.MakeFourCC('N', 'V', '2', '1')
	rgb3   = v4l2.MakeFourCC('R', 'G', 'B', '3')
	fwht   = v4l2.MakeFourCC('F', 'W', 'H', 'T')
	uyvy   = v4l2.MakeFourCC('U', 'Y', 'V', 'Y')
)

// Fake devices, after what the real drivers report.
func piEncoder() Device {
	return Device{Path: "/dev/video11", Driver: "bcm2835-codec", Card: "bcm2835-codec-encode", Kind: KindEncoder,
		Capture:   formats(true, []Size{{32, 1920, 2, 32, 1920, 2}}, FourCCH264),
		Output:    formats(false, []Size{{32, 1920, 2, 32, 1920, 2}}, FourCCYUV420, yvu420, FourCCNV12, nv21, FourCCYUYV, uyvy, rgb3),
		OutputFor: FourCCH264}
}

func nv12OnlyEncoder() Device {
	return Device{Path: "/dev/video3", Driver: "hantro-vpu", Card: "nxp,imx8mp-vpu-vc8000e", Kind: KindEncoder, MPlane: true,
		Capture: formats(true, []Size{{96, 1920, 8, 96, 1088, 8}}, FourCCH264), Output: formats(false, nil, FourCCNV12), OutputFor: FourCCH264}
}

func i420OnlyEncoder() Device {
	return Device{Path: "/dev/video5", Driver: "some-venc", Card: "venc", Kind: KindEncoder, MPlane: true,
		Capture: formats(true, nil, FourCCH264), Output: formats(false, nil, FourCCYUV420), OutputFor: FourCCH264}
}

func vicodecEncoder() Device {
	return Device{Path: "/dev/video0", Driver: "vicodec", Card: "vicodec", Kind: KindEncoder,
		Capture:   formats(true, []Size{{640, 4096, 8, 360, 2160, 8}}, fwht),
		Output:    formats(false, []Size{{640, 4096, 8, 360, 2160, 8}}, FourCCYUV420, yvu420, FourCCNV12, FourCCYUYV),
		OutputFor: fwht}
}

func vividCamera() Device {
	return Device{Path: "/dev/video4", Driver: "vivid", Card: "vivid", Kind: KindCamera,
		Capture: formats(false, []Size{{640, 640, 0, 480, 480, 0}, {1280, 1280, 0, 720, 720, 0}}, FourCCYUYV, FourCCYUV420, rgb3)}
}

func decoder() Device {
	return Device{Path: "/dev/video10", Driver: "bcm2835-codec", Card: "bcm2835-codec-decode", Kind: KindDecoder,
		Capture: formats(false, nil, FourCCYUV420), Output: formats(true, nil, FourCCH264)}
}

func TestChoose(t *testing.T) {
	yuyv, nv12, i420 := media.PixelFormatYUYV, media.PixelFormatNV12, media.PixelFormatI420
	for _, tc := range []struct {
		name    string
		cam     media.PixelFormat
		w, h    int
		devices []Device
		force   string
		backend Backend
		device  string
		input   media.PixelFormat
		convert bool
		reason  string // substring
	}{
		{"Pi 4 takes the camera's YUYV as is", yuyv, 1280, 720, []Device{vividCamera(), decoder(), piEncoder()}, "",
			BackendHardware, "/dev/video11", yuyv, false, "from the camera's YUYV as is"},
		{"auto spelled out", nv12, 1920, 1080, []Device{piEncoder()}, ForceAuto, BackendHardware, "/dev/video11", nv12, false, "as is"},
		{"vicodec only: no H.264", yuyv, 1280, 720, []Device{vividCamera(), vicodecEncoder()}, "",
			BackendSoftware, "", 0, false, "no memory-to-memory device produces H.264 (/dev/video0 (vicodec): produces FWHT, not H.264)"},
		{"no devices at all", yuyv, 640, 480, nil, "", BackendSoftware, "", 0, false, "no memory-to-memory encoder on this machine"},
		{"a decoder is not an encoder", yuyv, 640, 480, []Device{decoder()}, "", BackendSoftware, "", 0, false, "no memory-to-memory encoder"},
		{"software forced", yuyv, 1280, 720, []Device{piEncoder()}, ForceSoftware, BackendSoftware, "", 0, false, "forced by configuration"},
		{"hardware forced, none there", yuyv, 1280, 720, []Device{vicodecEncoder()}, ForceHardware,
			BackendNone, "", 0, false, "hardware encoder forced by configuration, but no memory-to-memory device produces H.264"},
		{"hardware forced, spelled hardware", yuyv, 1280, 720, nil, "hardware", BackendNone, "", 0, false, "forced by configuration, but no memory-to-memory encoder"},
		{"device forced", yuyv, 1280, 720, []Device{i420OnlyEncoder(), piEncoder()}, "/dev/video11", BackendHardware, "/dev/video11", yuyv, false, "as is"},
		{"forced device missing", yuyv, 1280, 720, []Device{piEncoder()}, "/dev/video99", BackendNone, "", 0, false, "/dev/video99 forced by configuration is not there"},
		{"forced device is the camera", yuyv, 1280, 720, []Device{vividCamera(), piEncoder()}, "/dev/video4", BackendNone, "", 0, false, "is a camera, not an encoder"},
		{"forced device cannot do it", yuyv, 1280, 720, []Device{nv12OnlyEncoder()}, "/dev/video3", BackendNone, "", 0, false, "takes NV12; neither the camera's YUYV nor I420"},
		{"unknown force value", yuyv, 1280, 720, []Device{piEncoder()}, "gpu", BackendNone, "", 0, false, `unknown encoder backend "gpu"`},
		{"too large for the Pi", yuyv, 3840, 2160, []Device{piEncoder()}, "", BackendSoftware, "", 0, false,
			"no H.264 encoder takes 3840x2160 YUYV (/dev/video11 (bcm2835-codec-encode): H.264 at 32x32..1920x1920, not 3840x2160)"},
		{"NV12-only encoder, NV12 camera", nv12, 1920, 1080, []Device{nv12OnlyEncoder()}, "", BackendHardware, "/dev/video3", nv12, false, "as is"},
		{"NV12-only encoder, YUYV camera: we convert only to I420", yuyv, 1280, 720, []Device{nv12OnlyEncoder()}, "",
			BackendSoftware, "", 0, false, "takes NV12; neither the camera's YUYV nor I420"},
		{"I420-only encoder, YUYV camera: converted", yuyv, 1280, 720, []Device{i420OnlyEncoder()}, "",
			BackendHardware, "/dev/video5", i420, true, "converted from the camera's YUYV"},
		{"a direct encoder beats an earlier converting one", nv12, 1280, 720, []Device{i420OnlyEncoder(), nv12OnlyEncoder()}, "",
			BackendHardware, "/dev/video3", nv12, false, "as is"},
		{"the first of two equal encoders", i420, 640, 480, []Device{i420OnlyEncoder(), piEncoder()}, "",
			BackendHardware, "/dev/video5", i420, false, "as is"},
		{"a camera layout the appliance does not feed", media.PixelFormatUnknown, 640, 480, []Device{piEncoder()}, "",
			BackendSoftware, "", 0, false, "is not a layout the appliance feeds an encoder"},
		{"an encoder whose raw formats could not be listed", yuyv, 640, 480,
			[]Device{{Path: "/dev/video7", Card: "x", Kind: KindEncoder, Capture: formats(true, nil, FourCCH264), Err: "VIDIOC_S_FMT CAPTURE H264: device or resource busy"}}, "",
			BackendSoftware, "", 0, false, "lists no raw format for H.264 (VIDIOC_S_FMT CAPTURE H264: device or resource busy)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, reason := Choose(tc.cam, tc.w, tc.h, tc.devices, tc.force)
			t.Logf("%s: %s", c.Backend, reason)
			if c.Backend != tc.backend || c.Device != tc.device || c.Convert != tc.convert {
				t.Errorf("chose %q %q convert %v; want %q %q convert %v", c.Backend, c.Device, c.Convert, tc.backend, tc.device, tc.convert)
			}
			if tc.backend == BackendHardware && c.InputFormat != tc.input {
				t.Errorf("input format %v; want %v", c.InputFormat, tc.input)
			}
			if !strings.Contains(reason, tc.reason) || c.Reason != reason {
				t.Errorf("reason %q; want it to contain %q", reason, tc.reason)
			}
			if c.CameraFormat != tc.cam || c.Width != tc.w || c.Height != tc.h {
				t.Errorf("choice forgot what it chose for: %+v", c)
			}
		})
	}
}

func TestSizes(t *testing.T) {
	s := Size{640, 4096, 8, 360, 2160, 8}
	for _, tc := range []struct {
		w, h int
		fits bool
	}{{640, 360, true}, {1920, 1080, true}, {320, 240, false}, {4096, 2304, false}} {
		if got := s.Fits(tc.w, tc.h); got != tc.fits {
			t.Errorf("%v fits %dx%d: %v", s, tc.w, tc.h, got)
		}
	}
	if got := (Format{Sizes: []Size{{640, 640, 0, 480, 480, 0}, {1280, 1280, 0, 720, 720, 0}}}).sizeRange(); got != "640x480..1280x720" {
		t.Errorf("sizeRange %q", got)
	}
	if got := (Format{}).sizeRange(); got != "any size" {
		t.Errorf("sizeRange without sizes %q", got)
	}
	if s.String() != "640x360..4096x2160" || (Size{640, 640, 0, 480, 480, 0}).String() != "640x480" {
		t.Errorf("Size.String: %v", s)
	}
	if FourCCH264.String() != "H264" || FourCC(0xa0363159).String() != "0xa0363159" {
		t.Error("FourCC.String")
	}
}

func TestSplit(t *testing.T) {
	cams, encs := Split([]Device{vividCamera(), decoder(), vicodecEncoder(), {Path: "/dev/video9"}, piEncoder()})
	if len(cams) != 1 || cams[0].Path != "/dev/video4" || len(encs) != 2 || encs[0].Path != "/dev/video0" || encs[1].Path != "/dev/video11" {
		t.Errorf("cameras %v, encoders %v", cams, encs)
	}
}

func TestWriteTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		devices []Device
		cam     media.PixelFormat
		want    []string
	}{
		{"Pi", []Device{vividCamera(), piEncoder(), vicodecEncoder()}, media.PixelFormatYUYV, []string{
			"CAMERAS", "/dev/video4", "YUYV 640x480..1280x720", "RGB3",
			"MEMORY-TO-MEMORY ENCODERS", "VERDICT for 1280x720 YUYV",
			"/dev/video11", "bcm2835-codec-encode", "single-planar", "H264 32x32..1920x1920", "CHOSEN: encodes H.264 from the camera's YUYV as is",
			"/dev/video0", "produces FWHT, not H.264", "(for FWHT)",
			"ENCODER: hardware, /dev/video11 (bcm2835-codec-encode), the camera's frames as they are",
			"why: /dev/video11 (bcm2835-codec-encode) encodes H.264",
		}},
		{"virtual board", []Device{vividCamera(), vicodecEncoder()}, media.PixelFormatYUYV, []string{
			"ENCODER: software (openh264)", "why: no memory-to-memory device produces H.264",
		}},
		{"converting", []Device{i420OnlyEncoder()}, media.PixelFormatNV12, []string{
			"CAMERAS\n  none", "multi-planar", "CHOSEN", "frames converted from NV12 to I420",
		}},
		{"nothing", nil, media.PixelFormatYUYV, []string{"CAMERAS\n  none", "MEMORY-TO-MEMORY ENCODERS\n  none", "ENCODER: software"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			choice, _ := Choose(tc.cam, 1280, 720, tc.devices, "")
			cams, encs := Split(tc.devices)
			var b bytes.Buffer
			if err := WriteTable(&b, cams, encs, choice); err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + b.String())
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("table lacks %q", w)
				}
			}
		})
	}
	var b bytes.Buffer
	WriteTable(&b, nil, nil, Choice{Backend: BackendNone, Reason: "hardware encoder forced by configuration, but none"})
	if !strings.Contains(b.String(), "ENCODER: none") {
		t.Errorf("a failed forced choice prints\n%s", b.String())
	}
}
