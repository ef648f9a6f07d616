//go:build vboardguest && linux && cgo

package v4l2m2m

// The hardware scaler against vim2m, the kernel's virtual memory-to-memory scaler, fed with
// vivid's frames. vim2m in Linux 6.1 takes RGB (RGB24, BGR24, RGB565) on OUTPUT, makes those
// and YUYV on CAPTURE, up to 640x480, and scales by picking the nearest sample; the software
// scaler (encoder/scale) averages areas. On vivid's colour bars and 16x16 checkers the edges
// fall on whole output samples at these sizes, so the two must agree almost exactly; any
// error of geometry, stride or format shows as a large difference.

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/edgeflux/edge/encoder/scale"
	"github.com/edgeflux/edge/internal/media"
)

// vivid's controls (drivers/media/test-drivers/vivid/vivid-ctrls.c).
const (
	vividCtrlTestPattern = 0x00f0f000 // 0: 75% colour bars, 10: 16x16 checkers
	vividCtrlOSDText     = 0x00f0f001 // 2: no text drawn over the picture
)

func findScalerNodes(t *testing.T) (vim2m, vivid string) {
	t.Helper()
	paths, _ := filepath.Glob("/dev/video*")
	for _, p := range paths {
		d, err := openDevice(p)
		if err != nil {
			continue
		}
		switch {
		case d.driver == "vim2m" && d.isM2M():
			vim2m = p
		case d.driver == "vivid" && d.caps&capVideoCapture != 0 && vivid == "":
			vivid = p
		}
		d.close()
	}
	if vim2m == "" || vivid == "" {
		t.Skipf("no vim2m and vivid among %v (not the virtual board?)", paths)
	}
	return vim2m, vivid
}

// compare returns the PSNR and the mean absolute difference of two pictures of the same
// format and size, over every sample of every channel.
func compare(t *testing.T, a, b *media.Frame) (psnr, mad float64) {
	t.Helper()
	if a.Format != b.Format || a.Width != b.Width || a.Height != b.Height {
		t.Fatalf("comparing %v %dx%d with %v %dx%d", a.Format, a.Width, a.Height, b.Format, b.Width, b.Height)
	}
	rowBytes := map[media.PixelFormat]int{media.PixelFormatRGB24: 3 * a.Width, media.PixelFormatYUYV: 2 * a.Width}[a.Format]
	if rowBytes == 0 {
		t.Fatalf("compare: %v not handled", a.Format)
	}
	var sq, abs float64
	n := 0
	for y := range a.Height {
		ra := a.Planes[0][y*a.Strides[0] : y*a.Strides[0]+rowBytes]
		rb := b.Planes[0][y*b.Strides[0] : y*b.Strides[0]+rowBytes]
		for i := range ra {
			d := float64(ra[i]) - float64(rb[i])
			sq += d * d
			abs += math.Abs(d)
			n++
		}
	}
	mse := sq / float64(n)
	if mse == 0 {
		return math.Inf(1), 0
	}
	return 10 * math.Log10(255*255/mse), abs / float64(n)
}

// diffColumns counts the columns of two RGB24 pictures that differ anywhere by more than 2.
func diffColumns(a, b *media.Frame) int {
	n := 0
	for x := range a.Width {
		for y := range a.Height {
			i, j := y*a.Strides[0]+3*x, y*b.Strides[0]+3*x
			if d := max(absDiff(a.Planes[0][i], b.Planes[0][j]), absDiff(a.Planes[0][i+1], b.Planes[0][j+1]), absDiff(a.Planes[0][i+2], b.Planes[0][j+2])); d > 2 {
				n++
				break
			}
		}
	}
	return n
}

func absDiff(a, b byte) byte { return max(a, b) - min(a, b) }

// TestVBoardScaler scales vivid's RGB24 frames with vim2m and with the software scaler and
// compares every picture, frame for frame. At 1/2 and 1/4 every edge of the pattern falls
// between output samples, so nearest-sample and area scaling must agree: PSNR at least 35 dB,
// mean difference under 1. At 3/4 the bar edges fall inside output samples, where the two
// filters differ by design: only the one output column at each of the 7 bar edges may differ.
func TestVBoardScaler(t *testing.T) {
	vim2m, vividPath := findScalerNodes(t)
	const frames = 20
	for _, tc := range []struct {
		pattern int64
		w, h    int
		exact   bool
	}{
		{0, 320, 240, true}, {0, 160, 120, true}, {0, 480, 360, false},
		{10, 320, 240, true}, {10, 160, 120, true},
	} {
		name := map[int64]string{0: "bars", 10: "checkers"}[tc.pattern]
		t.Run(fmt.Sprintf("%s/640x480-%dx%d", name, tc.w, tc.h), func(t *testing.T) {
			log, _ := testLog(t)
			cam := openVividAs(t, vividPath, FourCCRGB24, 640, 480,
				map[uint32]int64{vividCtrlTestPattern: tc.pattern, vividCtrlOSDText: 2})
			hw, err := NewScaler(ScalerOptions{Device: vim2m, Timeout: guestTimeout, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			defer hw.Close()
			soft := scale.New()
			worstPSNR, worstMAD, worstCols := math.Inf(1), 0.0, 0
			for i := range frames {
				f, idx := cam.next()
				got, err := hw.Scale(f, tc.w, tc.h)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				want, err := soft.Scale(f, tc.w, tc.h)
				if err != nil {
					t.Fatal(err)
				}
				if got.Seq != f.Seq {
					t.Errorf("frame %d came back as %d", f.Seq, got.Seq)
				}
				psnr, mad := compare(t, got, want)
				worstPSNR, worstMAD, worstCols = min(worstPSNR, psnr), max(worstMAD, mad), max(worstCols, diffColumns(got, want))
				cam.requeue(idx)
			}
			st := hw.Stats()
			t.Logf("%s: %d frames, worst PSNR %.1f dB, worst mean abs difference %.3f, %d of %d columns differ; stats %+v",
				hw.Name(), st.Frames, worstPSNR, worstMAD, worstCols, tc.w, st)
			if st.Frames != frames || st.Sessions != 1 {
				t.Errorf("scaler made %d pictures in %d sessions; want %d in 1", st.Frames, st.Sessions, frames)
			}
			switch {
			case tc.exact && (worstPSNR < 35 || worstMAD >= 1):
				t.Errorf("vim2m against the software scaler: worst PSNR %.1f dB, mean abs difference %.3f; want >= 35 dB and < 1", worstPSNR, worstMAD)
			case !tc.exact && worstCols > 7:
				t.Errorf("vim2m against the software scaler: %d columns differ; want at most the one at each of the 7 bar edges", worstCols)
			}
		})
	}
}

// TestVBoardScalerConvertsAndRefuses has vim2m make YUYV from RGB24 while it scales (checked
// against the software scaler's RGB24 picture converted with vim2m's own BT.601 formula), and
// checks that a size beyond the device is refused with ErrScalerSize, not scaled wrongly.
func TestVBoardScalerConvertsAndRefuses(t *testing.T) {
	vim2m, vividPath := findScalerNodes(t)
	log, _ := testLog(t)
	cam := openVividAs(t, vividPath, FourCCRGB24, 640, 480, map[uint32]int64{vividCtrlTestPattern: 0, vividCtrlOSDText: 2})
	hw, err := NewScaler(ScalerOptions{Device: vim2m, OutputFormat: media.PixelFormatYUYV, Timeout: guestTimeout, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close()
	soft := scale.New()
	f, idx := cam.next()
	got, err := hw.Scale(f, 320, 240)
	if err != nil {
		t.Fatal(err)
	}
	rgb, err := soft.Scale(f, 320, 240)
	if err != nil {
		t.Fatal(err)
	}
	// vim2m's conversion (copy_two_pixels): Y of each pixel, U and V of the first of a pair.
	want := &media.Frame{Format: media.PixelFormatYUYV, Width: 320, Height: 240, Strides: [3]int{640}}
	want.Planes[0] = make([]byte, 640*240)
	for y := range 240 {
		for x := 0; x < 320; x += 2 {
			p := rgb.Planes[0][y*rgb.Strides[0]+3*x:]
			r0, g0, b0, r1, g1, b1 := int(p[0]), int(p[1]), int(p[2]), int(p[3]), int(p[4]), int(p[5])
			o := want.Planes[0][y*640+2*x:]
			o[0] = byte((8453*r0 + 16594*g0 + 3223*b0 + 524288) >> 15)
			o[1] = byte((-4878*r0 - 9578*g0 + 14456*b0 + 4210688) >> 15)
			o[2] = byte((8453*r1 + 16594*g1 + 3223*b1 + 524288) >> 15)
			o[3] = byte((14456*r0 - 12105*g0 - 2351*b0 + 4210688) >> 15)
		}
	}
	psnr, mad := compare(t, got, want)
	t.Logf("RGB24 640x480 -> YUYV 320x240: PSNR %.1f dB, mean abs difference %.3f", psnr, mad)
	if got.Format != media.PixelFormatYUYV || psnr < 35 || mad >= 1 {
		t.Errorf("vim2m YUYV picture: %v, PSNR %.1f dB, mean abs difference %.3f; want YUYV, >= 35 dB, < 1", got.Format, psnr, mad)
	}
	cam.requeue(idx)

	big := &media.Frame{Format: media.PixelFormatRGB24, Width: 1280, Height: 720, Strides: [3]int{3 * 1280}}
	big.Planes[0] = make([]byte, 3*1280*720)
	if _, err := hw.Scale(big, 640, 360); !errors.Is(err, ErrScalerSize) {
		t.Errorf("1280x720 on vim2m (640x480 at most): %v; want ErrScalerSize", err)
	}
	if _, err := hw.Scale(&media.Frame{Format: media.PixelFormatI420, Width: 640, Height: 480}, 320, 240); err == nil {
		t.Error("vim2m took I420, which it does not list on OUTPUT")
	}
}
