//go:build cgo

package openh264

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edgeflux/edge/device/testpattern"
	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/internal/h264"
	"github.com/edgeflux/edge/internal/media"
)

func openEncoder(t testing.TB, w, h, kbps int) encoder.Encoder {
	t.Helper()
	enc, err := New(encoder.Config{Width: w, Height: h, FPS: 30, BitrateBps: kbps * 1000, KeyframeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	return enc
}

func newTestEncoder(t testing.TB, w, h, kbps int) (encoder.Encoder, *testpattern.Source) {
	t.Helper()
	enc := openEncoder(t, w, h, kbps)
	src, err := testpattern.New(testpattern.Config{Width: w, Height: h, FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	return enc, src
}

// encodeN encodes n consecutive test-pattern frames spaced one frame interval apart.
func encodeN(t testing.TB, enc encoder.Encoder, src *testpattern.Source, first, n int) []media.AccessUnit {
	t.Helper()
	var aus []media.AccessUnit
	t0 := time.Now()
	for i := first; i < first+n; i++ {
		f := src.Draw(uint64(i), t0.Add(time.Duration(i)*time.Second/30))
		au, err := enc.Encode(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		au.Data = append([]byte(nil), au.Data...)
		aus = append(aus, au)
	}
	return aus
}

func TestKeyframesCarryParameterSetsAndConstrainedBaseline(t *testing.T) {
	enc, src := newTestEncoder(t, 640, 480, 1000)
	aus := encodeN(t, enc, src, 0, 75)
	if !aus[0].Keyframe {
		t.Fatal("first access unit is not a keyframe")
	}
	keyframes := 0
	for i, au := range aus {
		if len(au.Data) == 0 {
			continue
		}
		if au.Keyframe != h264.IsKeyframe(au.Data) {
			t.Errorf("frame %d: Keyframe=%v but stream says %v", i, au.Keyframe, h264.IsKeyframe(au.Data))
		}
		if au.FrameSeq != uint64(i) {
			t.Errorf("frame %d: FrameSeq %d", i, au.FrameSeq)
		}
		if !au.Keyframe {
			continue
		}
		keyframes++
		var types []h264.NALType
		for _, nal := range h264.SplitAnnexB(au.Data) {
			types = append(types, h264.Type(nal))
			if h264.Type(nal) == h264.NALSPS {
				sps, err := h264.ParseSPS(nal)
				if err != nil {
					t.Fatalf("frame %d: SPS: %v", i, err)
				}
				if !sps.ConstrainedBaseline() || sps.Width != 640 || sps.Height != 480 {
					t.Errorf("frame %d: SPS profile-level-id %s size %dx%d; want constrained baseline 640x480",
						i, sps.ProfileLevelID(), sps.Width, sps.Height)
				}
			}
		}
		if !hasInOrder(types, h264.NALSPS, h264.NALPPS, h264.NALIDR) {
			t.Errorf("frame %d: keyframe NAL types %v; want SPS, PPS before the IDR slice", i, types)
		}
	}
	// A 1 s keyframe interval at 30 fps over 75 frames: IDRs at 0, 30 and 60.
	if keyframes != 3 {
		t.Errorf("%d keyframes in 75 frames with a 30-frame interval; want 3", keyframes)
	}
}

func hasInOrder(types []h264.NALType, want ...h264.NALType) bool {
	i := 0
	for _, ty := range types {
		if i < len(want) && ty == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestRequestKeyframe(t *testing.T) {
	enc, src := newTestEncoder(t, 320, 240, 500)
	encodeN(t, enc, src, 0, 5)
	enc.RequestKeyframe()
	au := encodeN(t, enc, src, 5, 1)[0]
	if !au.Keyframe {
		t.Fatal("frame after RequestKeyframe is not a keyframe")
	}
	if next := encodeN(t, enc, src, 6, 1)[0]; next.Keyframe {
		t.Error("the keyframe request was not consumed: the following frame is a keyframe too")
	}
}

// TestSetBitrateChangesOutputSize runs on a test pattern with sensor-like noise: the clean
// pattern compresses below any bitrate worth testing, so it would show no difference.
func TestSetBitrateChangesOutputSize(t *testing.T) {
	enc, src := newTestEncoder(t, 640, 480, 3000)
	rng := rand.New(rand.NewPCG(1, 2))
	kbps := func(first int) int {
		bytes := 0
		for i := first; i < first+90; i++ {
			f := src.Draw(uint64(i), time.Now())
			for j := range f.Planes[0][640*120:] {
				f.Planes[0][640*120+j] += byte(rng.IntN(24))
			}
			au, err := enc.Encode(f)
			if err != nil {
				t.Fatal(err)
			}
			if i >= first+30 { // let rate control settle
				bytes += len(au.Data)
			}
		}
		return bytes * 8 * 30 / 60 / 1000
	}
	high := kbps(0)
	if err := enc.SetBitrate(500_000); err != nil {
		t.Fatal(err)
	}
	low := kbps(90)
	t.Logf("target 3000 kbit/s: %d kbit/s; target 500 kbit/s: %d kbit/s", high, low)
	if high < 2000 || high > 4000 {
		t.Errorf("at a 3000 kbit/s target the encoder made %d kbit/s", high)
	}
	if low*2 > high {
		t.Errorf("lowering the target from 3000 to 500 kbit/s only brought the output from %d to %d kbit/s", high, low)
	}
}

func TestConvertsNonI420(t *testing.T) {
	enc := openEncoder(t, 64, 64, 300)
	f := &media.Frame{Format: media.PixelFormatYUYV, Width: 64, Height: 64,
		Planes: [3][]byte{make([]byte, 64*64*2)}, Strides: [3]int{128}}
	au, err := enc.Encode(f)
	if err != nil || len(au.Data) == 0 {
		t.Fatalf("YUYV frame: %v, %d bytes", err, len(au.Data))
	}
	f.Width = 32
	if _, err := enc.Encode(f); err == nil {
		t.Error("a frame of another size was accepted")
	}
}

func TestRejectsBadConfig(t *testing.T) {
	if _, err := New(encoder.Config{Width: 0, Height: 480, FPS: 30, BitrateBps: 1}); err == nil {
		t.Error("zero width accepted")
	}
}
