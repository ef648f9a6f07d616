package h264

import (
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Parameter sets written by libx264 (ffmpeg -f lavfi -i testsrc2 -c:v libx264 ...), checked
// against ffprobe.
func TestParseSPSReal(t *testing.T) {
	tests := []struct {
		name string
		sps  string
		want SPS
		plid string
		cb   bool
	}{
		{
			"baseline 640x480", "6742c01ed900a03db011000003000100000300320f162e48",
			SPS{ProfileIDC: 66, ConstraintFlags: 0xc0, LevelIDC: 30, ChromaFormatIDC: 1, BitDepthLuma: 8, Width: 640, Height: 480, FrameMBSOnly: true},
			"42c01e", true,
		},
		{
			"main 1280x720", "674d401feca02802dd80880000030008000003019078c18cb0",
			SPS{ProfileIDC: 77, ConstraintFlags: 0x40, LevelIDC: 31, ChromaFormatIDC: 1, BitDepthLuma: 8, Width: 1280, Height: 720, FrameMBSOnly: true},
			"4d401f", false,
		},
		{
			"high 1920x1080 cropped from 1088", "67640028acd940780227e5c044000003000400000300c83c60c658",
			SPS{ProfileIDC: 100, LevelIDC: 40, ChromaFormatIDC: 1, BitDepthLuma: 8, Width: 1920, Height: 1080, FrameMBSOnly: true},
			"640028", false,
		},
		{
			"high interlaced 720x576", "6764001eacd940b424d8088000000300800000190f8a14cb",
			SPS{ProfileIDC: 100, LevelIDC: 30, ChromaFormatIDC: 1, BitDepthLuma: 8, Width: 720, Height: 576},
			"64001e", false,
		},
		{
			"high interlaced 1920x1080 cropped", "67640028acd94078044fde0220000003002000000643e2c5b2c0",
			SPS{ProfileIDC: 100, LevelIDC: 40, ChromaFormatIDC: 1, BitDepthLuma: 8, Width: 1920, Height: 1080},
			"640028", false,
		},
		{
			"high 4:2:2 10-bit 642x362", "677a001eb6cd940a42fe227c0440000003004000000c83c58b6580",
			SPS{ProfileIDC: 122, LevelIDC: 30, ChromaFormatIDC: 2, BitDepthLuma: 10, Width: 642, Height: 362, FrameMBSOnly: true},
			"7a001e", false,
		},
		{
			"high 4:4:4 352x288", "67f4000d919b282c12d808800000030080000019078a14cb",
			SPS{ProfileIDC: 244, LevelIDC: 13, ChromaFormatIDC: 3, BitDepthLuma: 8, Width: 352, Height: 288, FrameMBSOnly: true},
			"f4000d", false,
		},
		{
			"high 4:4:4 354x290", "67f40015919b282e13f1f1f808800000030080000019078b16cb",
			SPS{ProfileIDC: 244, LevelIDC: 21, ChromaFormatIDC: 3, BitDepthLuma: 8, Width: 354, Height: 290, FrameMBSOnly: true},
			"f40015", false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nal := unhex(tt.sps)
			got, err := ParseSPS(nal)
			if err != nil {
				t.Fatalf("ParseSPS: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseSPS = %+v, want %+v", got, tt.want)
			}
			if p := got.ProfileLevelID(); p != tt.plid {
				t.Errorf("ProfileLevelID = %q, want %q", p, tt.plid)
			}
			if cb := got.ConstrainedBaseline(); cb != tt.cb {
				t.Errorf("ConstrainedBaseline = %v, want %v", cb, tt.cb)
			}
			// Any prefix either parses to the same SPS (only VUI cut off) or is truncated.
			for n := range len(nal) {
				s, err := ParseSPS(nal[:n])
				if err == nil && s != tt.want {
					t.Errorf("prefix of %d bytes: parsed %+v", n, s)
				}
				if err != nil && !errors.Is(err, ErrTruncated) {
					t.Errorf("prefix of %d bytes: error %v, want ErrTruncated", n, err)
				}
			}
		})
	}
}

// bitWriter writes RBSP bits for building SPS test vectors.
type bitWriter struct {
	b    []byte
	nbit int
}

func (w *bitWriter) u(n int, v uint64) {
	for i := n - 1; i >= 0; i-- {
		if w.nbit%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>i&1 == 1 {
			w.b[len(w.b)-1] |= 0x80 >> (w.nbit % 8)
		}
		w.nbit++
	}
}

func (w *bitWriter) flag(v bool) {
	if v {
		w.u(1, 1)
	} else {
		w.u(1, 0)
	}
}

func (w *bitWriter) ue(v uint64) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.u(n, 0)
	w.u(n+1, v)
}

func (w *bitWriter) se(v int64) {
	if v > 0 {
		w.ue(uint64(2*v - 1))
	} else {
		w.ue(uint64(-2 * v))
	}
}

// nal ends the RBSP with its stop bit and returns it as a NAL unit with header 0x67 and
// emulation prevention bytes inserted.
func (w *bitWriter) nal() []byte {
	w.u(1, 1)
	for w.nbit%8 != 0 {
		w.u(1, 0)
	}
	out := []byte{0x67}
	zeros := 0
	for _, b := range w.b {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// spsFields are the inputs of a generated SPS.
type spsFields struct {
	profile, constraints, level uint8
	chroma                      uint64 // written only for high profiles
	separatePlanes              bool
	bitDepthLuma                uint64
	// scaling holds, per list, nil for "not present" or the delta_scale values to write.
	scaling              [][]int64
	pocType              uint64
	pocCycle             []int64
	widthMBs, heightMaps uint64
	frameMBSOnly         bool
	crop                 *[4]uint64 // left, right, top, bottom
	vui                  bool
}

func (f spsFields) write() []byte {
	var w bitWriter
	w.u(8, uint64(f.profile))
	w.u(8, uint64(f.constraints))
	w.u(8, uint64(f.level))
	w.ue(0) // seq_parameter_set_id
	if highProfile(f.profile) {
		w.ue(f.chroma)
		if f.chroma == 3 {
			w.flag(f.separatePlanes)
		}
		w.ue(f.bitDepthLuma - 8)
		w.ue(f.bitDepthLuma - 8)
		w.flag(false)
		w.flag(f.scaling != nil)
		for _, list := range f.scaling {
			w.flag(list != nil)
			for _, d := range list {
				w.se(d)
			}
		}
	}
	w.ue(4) // log2_max_frame_num_minus4
	w.ue(f.pocType)
	switch f.pocType {
	case 0:
		w.ue(2)
	case 1:
		w.flag(false)
		w.se(-3)
		w.se(7)
		w.ue(uint64(len(f.pocCycle)))
		for _, o := range f.pocCycle {
			w.se(o)
		}
	}
	w.ue(4) // max_num_ref_frames
	w.flag(false)
	w.ue(f.widthMBs - 1)
	w.ue(f.heightMaps - 1)
	w.flag(f.frameMBSOnly)
	if !f.frameMBSOnly {
		w.flag(true)
	}
	w.flag(true) // direct_8x8_inference_flag
	w.flag(f.crop != nil)
	if f.crop != nil {
		for _, c := range f.crop {
			w.ue(c)
		}
	}
	w.flag(f.vui)
	if f.vui {
		w.u(16, 0xffff) // stands in for VUI content, which ParseSPS does not read
	}
	return w.nal()
}

// fullList16() is a 16-entry scaling list of deltas that never reach nextScale 0, so all 16
// deltas are read; zeroList() ends a list after its first delta (nextScale 0 means "use the
// default list").
func fullList16() []int64 { return []int64{1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, -5, -6, -7, 100} }
func zeroList() []int64   { return []int64{-8} }

func fullList64() []int64 {
	l := make([]int64, 64)
	for i := range l {
		l[i] = int64(i%5) - 2
	}
	return l
}

func TestParseSPSGenerated(t *testing.T) {
	crop := func(l, r, t, b uint64) *[4]uint64 { return &[4]uint64{l, r, t, b} }
	tests := []struct {
		name   string
		f      spsFields
		w, h   int
		chroma uint8
	}{
		{"baseline 320x240", spsFields{profile: 66, constraints: 0xe0, level: 13, widthMBs: 20, heightMaps: 15, frameMBSOnly: true}, 320, 240, 1},
		{"baseline cropped 1920x1080", spsFields{profile: 66, constraints: 0x40, level: 40, widthMBs: 120, heightMaps: 68, frameMBSOnly: true, crop: crop(0, 0, 0, 4)}, 1920, 1080, 1},
		{"main cropped all sides", spsFields{profile: 77, level: 31, widthMBs: 41, heightMaps: 23, frameMBSOnly: true, crop: crop(1, 2, 3, 1), vui: true}, 656 - 6, 368 - 8, 1},
		{"main fields cropped", spsFields{profile: 77, level: 40, widthMBs: 120, heightMaps: 34, crop: crop(0, 0, 0, 2)}, 1920, 1080, 1},
		{"poc type 1", spsFields{profile: 77, level: 30, pocType: 1, pocCycle: []int64{1, -1, 5}, widthMBs: 40, heightMaps: 30, frameMBSOnly: true}, 640, 480, 1},
		{"poc type 2", spsFields{profile: 66, level: 30, pocType: 2, widthMBs: 40, heightMaps: 30, frameMBSOnly: true}, 640, 480, 1},
		{"high monochrome", spsFields{profile: 100, level: 30, chroma: 0, bitDepthLuma: 8, widthMBs: 40, heightMaps: 30, frameMBSOnly: true, crop: crop(3, 1, 1, 1)}, 636, 478, 0},
		{"high monochrome fields", spsFields{profile: 100, level: 30, chroma: 0, bitDepthLuma: 8, widthMBs: 40, heightMaps: 15, crop: crop(0, 0, 1, 1)}, 640, 476, 0},
		{
			"high scaling lists",
			spsFields{profile: 100, level: 41, chroma: 1, bitDepthLuma: 8, widthMBs: 80, heightMaps: 45, frameMBSOnly: true, crop: crop(0, 4, 0, 0),
				scaling: [][]int64{fullList16(), nil, zeroList(), fullList16(), nil, nil, fullList64(), zeroList()}},
			1272, 720, 1,
		},
		{
			"high 4:4:4 twelve scaling lists",
			spsFields{profile: 244, level: 41, chroma: 3, bitDepthLuma: 10, widthMBs: 80, heightMaps: 45, frameMBSOnly: true, crop: crop(1, 2, 3, 4),
				scaling: [][]int64{fullList16(), fullList16(), fullList16(), nil, nil, zeroList(), fullList64(), nil, fullList64(), zeroList(), nil, fullList64()}},
			1280 - 3, 720 - 7, 3,
		},
		{"high 4:4:4 separate planes", spsFields{profile: 244, level: 30, chroma: 3, separatePlanes: true, bitDepthLuma: 8, widthMBs: 40, heightMaps: 30, frameMBSOnly: true, crop: crop(1, 0, 0, 1)}, 639, 479, 3},
		{"high 4:2:2 fields", spsFields{profile: 122, level: 30, chroma: 2, bitDepthLuma: 10, widthMBs: 45, heightMaps: 18, crop: crop(0, 0, 0, 1)}, 720, 574, 2},
		{"profile 118 mvc", spsFields{profile: 118, level: 30, chroma: 1, bitDepthLuma: 8, widthMBs: 1, heightMaps: 1, frameMBSOnly: true}, 16, 16, 1},
		{"largest", spsFields{profile: 100, level: 52, chroma: 1, bitDepthLuma: 8, widthMBs: 1024, heightMaps: 1024, frameMBSOnly: true}, 16384, 16384, 1},
		{"crop to one pixel", spsFields{profile: 100, level: 10, chroma: 3, bitDepthLuma: 8, widthMBs: 1, heightMaps: 1, frameMBSOnly: true, crop: crop(15, 0, 0, 15)}, 1, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nal := tt.f.write()
			got, err := ParseSPS(nal)
			if err != nil {
				t.Fatalf("ParseSPS(% x): %v", nal, err)
			}
			bitDepth := uint8(8)
			if highProfile(tt.f.profile) {
				bitDepth = uint8(tt.f.bitDepthLuma)
			}
			want := SPS{
				ProfileIDC: tt.f.profile, ConstraintFlags: tt.f.constraints, LevelIDC: tt.f.level,
				ChromaFormatIDC: tt.chroma, BitDepthLuma: bitDepth,
				Width: tt.w, Height: tt.h, FrameMBSOnly: tt.f.frameMBSOnly,
			}
			if got != want {
				t.Errorf("ParseSPS = %+v, want %+v", got, want)
			}
		})
	}
}

func TestParseSPSErrors(t *testing.T) {
	base := spsFields{profile: 100, level: 30, chroma: 1, bitDepthLuma: 8, widthMBs: 40, heightMaps: 30, frameMBSOnly: true}
	with := func(change func(*spsFields)) []byte {
		f := base
		change(&f)
		return f.write()
	}
	tests := []struct {
		name string
		nal  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"header only", []byte{0x67}, ErrTruncated},
		{"not an sps", []byte{0x68, 0xce, 0x38, 0x80}, ErrInvalid},
		{"cut after level", []byte{0x67, 0x42, 0xc0, 0x1e}, ErrTruncated},
		{"endless zeros", []byte{0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 0, 0, 0, 0, 0}, ErrInvalid},
		{"chroma_format_idc 4", with(func(f *spsFields) { f.chroma = 4 }), ErrInvalid},
		{"bit depth 15", with(func(f *spsFields) { f.bitDepthLuma = 15 }), ErrInvalid},
		{"poc type 3", with(func(f *spsFields) { f.pocType = 3 }), ErrInvalid},
		{"poc cycle too long", with(func(f *spsFields) { f.pocType = 1; f.pocCycle = make([]int64, 256) }), ErrInvalid},
		{"too wide", with(func(f *spsFields) { f.widthMBs = 1025 }), ErrInvalid},
		{"too tall with fields", with(func(f *spsFields) { f.heightMaps = 513; f.frameMBSOnly = false }), ErrInvalid},
		{"crop all width", with(func(f *spsFields) { f.crop = &[4]uint64{160, 160, 0, 0} }), ErrInvalid},
		{"crop all height", with(func(f *spsFields) { f.crop = &[4]uint64{0, 0, 240, 0} }), ErrInvalid},
		{"crop offset huge", with(func(f *spsFields) { f.crop = &[4]uint64{0, 1 << 31, 0, 0} }), ErrInvalid},
		{"scaling delta out of range", with(func(f *spsFields) { f.scaling = [][]int64{{200}} }), ErrInvalid},
		{"scaling list cut", with(func(f *spsFields) { f.scaling = [][]int64{{1, 2}} })[:7], ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSPS(tt.nal)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseSPS(% x) = %+v, %v; want error %v", tt.nal, s, err, tt.want)
			}
			if s != (SPS{}) {
				t.Errorf("returned %+v with the error, want zero SPS", s)
			}
		})
	}
}

func TestProfileLevelID(t *testing.T) {
	tests := []struct {
		s    SPS
		want string
	}{
		{SPS{ProfileIDC: 66, ConstraintFlags: 0xe0, LevelIDC: 31}, "42e01f"},
		{SPS{ProfileIDC: 100, LevelIDC: 52}, "640034"},
		{SPS{}, "000000"},
		{SPS{ProfileIDC: 255, ConstraintFlags: 255, LevelIDC: 255}, "ffffff"},
	}
	for _, tt := range tests {
		if got := tt.s.ProfileLevelID(); got != tt.want {
			t.Errorf("%+v.ProfileLevelID() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestConstrainedBaseline(t *testing.T) {
	tests := []struct {
		name string
		s    SPS
		want bool
	}{
		{"42e01f", SPS{ProfileIDC: 66, ConstraintFlags: 0xe0}, true},
		{"42401f", SPS{ProfileIDC: 66, ConstraintFlags: 0x40}, true},
		{"42001f baseline", SPS{ProfileIDC: 66}, false},
		{"42801f set0 only", SPS{ProfileIDC: 66, ConstraintFlags: 0x80}, false},
		{"4d401f main", SPS{ProfileIDC: 77, ConstraintFlags: 0x40}, false},
		{"64401f high", SPS{ProfileIDC: 100, ConstraintFlags: 0x40}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.ConstrainedBaseline(); got != tt.want {
				t.Errorf("ConstrainedBaseline() = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseSPS(f *testing.F) {
	f.Add(unhex("6742c01ed900a03db011000003000100000300320f162e48"))
	f.Add(unhex("67f40015919b282e13f1f1f808800000030080000019078b16cb"))
	f.Add(spsFields{profile: 244, level: 41, chroma: 3, bitDepthLuma: 10, widthMBs: 80, heightMaps: 45,
		scaling: [][]int64{fullList16(), nil, zeroList(), nil, nil, nil, fullList64()}, pocType: 1, pocCycle: []int64{2, -2}}.write())
	f.Fuzz(func(t *testing.T, nal []byte) {
		s, err := ParseSPS(nal)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		if s.Width < 1 || s.Width > MaxDimension || s.Height < 1 || s.Height > MaxDimension {
			t.Fatalf("size %dx%d out of 1..%d", s.Width, s.Height, MaxDimension)
		}
		if s.ChromaFormatIDC > 3 || s.BitDepthLuma < 8 || s.BitDepthLuma > 14 {
			t.Fatalf("chroma %d bit depth %d", s.ChromaFormatIDC, s.BitDepthLuma)
		}
	})
}
