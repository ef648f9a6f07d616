//go:build vboardguest

package probe

// Runs inside the virtual board (internal/vboard) against real drivers: vicodec (a stateful
// FWHT encoder, its decoders), vim2m (a converter) and vivid (a camera). The build is pure
// Go: CGO_ENABLED=0 go test -c -tags vboardguest ./encoder/probe

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/edgeflux/edge/internal/media"

	"github.com/edgeflux/edge/internal/v4l2"
)

func TestVBoardProbe(t *testing.T) {
	devs, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	byDriverKind := func(driver string, k Kind) []Device {
		var out []Device
		for _, d := range devs {
			if d.Driver == driver && d.Kind == k {
				out = append(out, d)
			}
		}
		return out
	}
	for _, d := range devs {
		t.Logf("%s: %s %q %v mplane=%v capture=[%s] output=[%s] for %v err=%q", d.Path, d.Driver, d.Card, d.Kind, d.MPlane,
			fourccs(d.Capture), fourccs(d.Output), d.OutputFor, d.Err)
	}
	encs := byDriverKind("vicodec", KindEncoder)
	if len(encs) != 1 {
		t.Fatalf("%d vicodec encoders; want 1", len(encs))
	}
	enc := encs[0]
	if b, err := os.ReadFile("/sys/module/vicodec/parameters/multiplanar"); err == nil && (strings.TrimSpace(string(b)) == "Y") != enc.MPlane {
		t.Errorf("vicodec.multiplanar=%s but the probe says mplane=%v", strings.TrimSpace(string(b)), enc.MPlane)
	}
	fwht := v4l2.MakeFourCC('F', 'W', 'H', 'T')
	if f, ok := enc.captures(fwht); !ok || !f.Compressed || !slices.Contains(f.Sizes, Size{640, 4096, 8, 360, 2160, 8}) {
		t.Errorf("vicodec encoder CAPTURE %+v; want compressed FWHT 640x360..4096x2160", enc.Capture)
	}
	if enc.OutputFor != fwht {
		t.Errorf("raw formats listed for %v; want FWHT", enc.OutputFor)
	}
	for _, want := range []FourCC{FourCCYUV420, FourCCNV12, FourCCYUYV} {
		if _, ok := enc.outputs(want); !ok {
			t.Errorf("vicodec encoder OUTPUT lacks %v: %s", want, fourccs(enc.Output))
		}
	}
	if n := len(byDriverKind("vicodec", KindDecoder)); n != 2 {
		t.Errorf("%d vicodec decoders; want the stateful and the stateless one", n)
	}
	if n := len(byDriverKind("vim2m", KindConverter)); n != 1 {
		t.Errorf("%d vim2m converters; want 1", n)
	}
	cams := byDriverKind("vivid", KindCamera)
	if len(cams) == 0 {
		t.Fatal("vivid's capture node is not listed as a camera")
	}
	if f, ok := cams[0].captures(FourCCYUYV); !ok || !f.fits(1280, 720) {
		t.Errorf("vivid YUYV %+v; want 1280x720 among its sizes", f)
	}

	choice, reason := Choose(media.PixelFormatYUYV, 1280, 720, devs, "")
	if choice.Backend != BackendSoftware || !strings.Contains(reason, "no memory-to-memory device produces H.264") ||
		!strings.Contains(reason, enc.Path+" (vicodec): produces FWHT, not H.264") {
		t.Errorf("chose %q: %s; want software because vicodec produces FWHT", choice.Backend, reason)
	}
	if c, r := Choose(media.PixelFormatYUYV, 1280, 720, devs, ForceHardware); c.Backend != BackendNone {
		t.Errorf("hardware forced on the virtual board: %q %s", c.Backend, r)
	}
	// vim2m is the board's scaler: it takes RGB only, up to 640x480.
	layers := [][2]int{{640, 360}, {320, 180}}
	sc := ChooseScaler(media.PixelFormatYUYV, 1280, 720, layers, devs)
	m2m := byDriverKind("vim2m", KindConverter)
	if sc.Device != "" || len(m2m) != 1 || !strings.Contains(sc.Reason, m2m[0].Path+" (vim2m): takes ") || !strings.Contains(sc.Reason, "not the camera's YUYV") {
		t.Errorf("scaler for a YUYV camera: %q: %s; want software, vim2m takes no YUYV", sc.Device, sc.Reason)
	}
	if rgb := ChooseScaler(media.PixelFormatRGB24, 640, 480, [][2]int{{320, 240}}, devs); len(m2m) == 1 && (rgb.Device != m2m[0].Path || rgb.Output != media.PixelFormatRGB24) {
		t.Errorf("scaler for RGB24 640x480: %q making %v: %s; want vim2m making RGB24", rgb.Device, rgb.Output, rgb.Reason)
	}
	cameras, encoders := Split(devs)
	var b bytes.Buffer
	if err := WriteTable(&b, cameras, encoders, choice); err != nil {
		t.Fatal(err)
	}
	if err := WriteScalers(&b, Scalers(devs), sc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "MEMORY-TO-MEMORY SCALERS") || !strings.Contains(b.String(), "SCALER: software (encoder/scale)") {
		t.Errorf("probe table without the scaler section:\n%s", b.String())
	}
	t.Log("edged --probe would print:\n" + b.String())
}
