package v4l2m2m

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/yuv"
	"github.com/edgeflux/edge/internal/media"

	"github.com/edgeflux/edge/internal/v4l2"
)

func TestFourCC(t *testing.T) {
	for _, tc := range []struct {
		f    FourCC
		want string
	}{
		{FourCCH264, "H264"}, {FourCCFWHT, "FWHT"}, {FourCCYUV420, "YU12"}, {FourCCNV12, "NV12"},
		{FourCCYUYV, "YUYV"}, {v4l2.MakeFourCC('4', '2', '2', 'P'), "422P"}, {0xa0363159, "0xa0363159"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("%#x: %q; want %q", uint32(tc.f), got, tc.want)
		}
	}
	if v4l2.MakeFourCC('H', '2', '6', '4') != FourCCH264 {
		t.Error("MakeFourCC disagrees with the constant")
	}
	for p, want := range map[media.PixelFormat]FourCC{media.PixelFormatI420: FourCCYUV420, media.PixelFormatNV12: FourCCNV12,
		media.PixelFormatYUYV: FourCCYUYV, media.PixelFormatUnknown: 0} {
		if got := RawFourCC(p); got != want {
			t.Errorf("RawFourCC(%v) = %v; want %v", p, got, want)
		}
	}
}

func fm(fcc FourCC, w, h, bpl int) format {
	f := format{PixelFormat: fcc, Width: uint32(w), Height: uint32(h), NumPlanes: 1}
	f.BytesPerLine[0] = uint32(bpl)
	switch fcc {
	case FourCCYUYV:
		f.SizeImage[0] = uint32(bpl * h)
	default:
		f.SizeImage[0] = uint32(bpl * h * 3 / 2)
	}
	return f
}

func TestRawPlanes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       format
		w, h    int
		want    []planeSpec
		wantErr string
	}{
		{"I420 tight", fm(FourCCYUV420, 640, 480, 640), 640, 480,
			[]planeSpec{{0, 640, 640, 480}, {307200, 320, 320, 240}, {384000, 320, 320, 240}}, ""},
		{"I420 1080 in 1088 rows", fm(FourCCYUV420, 1920, 1088, 1920), 1920, 1080,
			[]planeSpec{{0, 1920, 1920, 1080}, {1920 * 1088, 960, 960, 540}, {1920*1088 + 960*544, 960, 960, 540}}, ""},
		{"NV12 padded lines", fm(FourCCNV12, 1280, 720, 1344), 1280, 720,
			[]planeSpec{{0, 1344, 1280, 720}, {1344 * 720, 1344, 1280, 360}}, ""},
		{"YUYV", fm(FourCCYUYV, 640, 480, 1280), 640, 480, []planeSpec{{0, 1280, 1280, 480}}, ""},
		{"buffer smaller than the picture", fm(FourCCYUV420, 640, 360, 640), 640, 480, nil, "cannot hold"},
		{"no bytes per line", fm(FourCCYUV420, 640, 480, 0), 640, 480, nil, "cannot hold"},
		{"RGB24 (the scaler's)", fm(FourCCRGB24, 640, 480, 1920), 640, 480, []planeSpec{{0, 1920, 1920, 480}}, ""},
		{"unsupported format", fm(v4l2.MakeFourCC('B', 'G', 'R', '3'), 640, 480, 1920), 640, 480, nil, "not supported"},
		{"separate memory planes", func() format { f := fm(FourCCYUV420, 640, 480, 640); f.NumPlanes = 3; return f }(), 640, 480, nil, "memory planes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rawPlanes(tc.f, tc.w, tc.h)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// pattern fills a frame of format p at w x h with row strides padded by pad bytes, each
// sample a function of plane, row and column.
func pattern(p media.PixelFormat, w, h, pad int) *media.Frame {
	f := &media.Frame{Format: p, Width: w, Height: h, Seq: 7}
	fill := func(i, rowBytes, rows int) {
		stride := rowBytes + pad
		b := make([]byte, stride*rows)
		for r := range rows {
			for c := range rowBytes {
				b[r*stride+c] = byte(i*71 + r*13 + c*7)
			}
		}
		f.Planes[i], f.Strides[i] = b, stride
	}
	switch p {
	case media.PixelFormatI420:
		fill(0, w, h)
		fill(1, w/2, h/2)
		fill(2, w/2, h/2)
	case media.PixelFormatNV12:
		fill(0, w, h)
		fill(1, w, h/2)
	case media.PixelFormatYUYV:
		fill(0, 2*w, h)
	}
	return f
}

func TestCopyFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *media.Frame
		dst  format
	}{
		{"I420 same layout", pattern(media.PixelFormatI420, 64, 48, 0), fm(FourCCYUV420, 64, 48, 64)},
		{"I420 padded source into an aligned buffer", pattern(media.PixelFormatI420, 64, 40, 8), fm(FourCCYUV420, 64, 48, 64)},
		{"NV12 into wider lines", pattern(media.PixelFormatNV12, 64, 48, 0), fm(FourCCNV12, 64, 48, 96)},
		{"YUYV", pattern(media.PixelFormatYUYV, 64, 48, 4), fm(FourCCYUYV, 64, 48, 128)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, tc.dst.SizeImage[0])
			if err := copyFrame(dst, tc.dst, tc.f); err != nil {
				t.Fatal(err)
			}
			specs, _ := rawPlanes(tc.dst, tc.f.Width, tc.f.Height)
			for i, s := range specs {
				for r := range s.rows {
					got := dst[s.offset+r*s.stride : s.offset+r*s.stride+s.rowBytes]
					want := tc.f.Planes[i][r*tc.f.Strides[i] : r*tc.f.Strides[i]+s.rowBytes]
					if !bytes.Equal(got, want) {
						t.Fatalf("plane %d row %d differs", i, r)
					}
				}
			}
		})
	}
	f := pattern(media.PixelFormatI420, 64, 48, 0)
	if err := copyFrame(make([]byte, 100), fm(FourCCYUV420, 64, 48, 64), f); err == nil {
		t.Error("a buffer too small was accepted")
	}
	if err := copyFrame(make([]byte, 64*48*2), fm(FourCCNV12, 64, 48, 64), f); err == nil {
		t.Error("an I420 frame was copied into an NV12 queue")
	}
	short := pattern(media.PixelFormatI420, 64, 48, 0)
	short.Planes[2] = short.Planes[2][:10]
	if err := copyFrame(make([]byte, 64*48*2), fm(FourCCYUV420, 64, 48, 64), short); err == nil {
		t.Error("a frame with a short plane was accepted")
	}
}

func TestConvertFrame(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      *media.Frame
		dst    format
		passes int
	}{
		{"NV12 into a tight I420 buffer: one pass", pattern(media.PixelFormatNV12, 64, 48, 0), fm(FourCCYUV420, 64, 48, 64), 1},
		{"YUYV into an aligned I420 buffer: two passes", pattern(media.PixelFormatYUYV, 64, 40, 0), fm(FourCCYUV420, 64, 48, 64), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want yuv.I420
			if err := yuv.Convert(&want, tc.f); err != nil {
				t.Fatal(err)
			}
			dst := make([]byte, tc.dst.SizeImage[0])
			var scratch yuv.I420
			passes, err := convertFrame(dst, tc.dst, tc.f, &scratch)
			if err != nil || passes != tc.passes {
				t.Fatalf("%d passes, %v; want %d", passes, err, tc.passes)
			}
			specs, _ := rawPlanes(tc.dst, tc.f.Width, tc.f.Height)
			for i, pl := range [][]byte{want.Y, want.U, want.V} {
				s := specs[i]
				for r := range s.rows {
					if !bytes.Equal(dst[s.offset+r*s.stride:][:s.rowBytes], pl[r*s.rowBytes:][:s.rowBytes]) {
						t.Fatalf("plane %d row %d differs from yuv.Convert", i, r)
					}
				}
			}
		})
	}
	if _, err := convertFrame(make([]byte, 1<<16), fm(FourCCNV12, 64, 48, 64), pattern(media.PixelFormatYUYV, 64, 48, 0), &yuv.I420{}); err == nil {
		t.Error("conversion to NV12 accepted; only I420 is a conversion target")
	}
}

// exported makes an I420 frame whose planes sit in one buffer the way a camera's exported
// buffer holds them: rows of stride bytes, chroma after rows rows of luma.
func exported(w, h, stride, rows int) *media.Frame {
	c := stride / 2
	buf := make([]byte, stride*rows+2*c*rows/2)
	u := stride * rows
	v := u + c*rows/2
	return &media.Frame{Format: media.PixelFormatI420, Width: w, Height: h,
		Planes:  [3][]byte{buf[:u], buf[u:v], buf[v:]},
		Strides: [3]int{stride, c, c},
		DMABuf:  &media.DMABuf{FD: 9, Length: len(buf)}}
}

func TestDMABufFits(t *testing.T) {
	vga := fm(FourCCYUV420, 640, 480, 640)
	for _, tc := range []struct {
		name string
		f    *media.Frame
		dst  format
		why  string // "" when it fits
	}{
		{"same layout", exported(640, 480, 640, 480), vga, ""},
		{"no DMABUF", func() *media.Frame { f := exported(640, 480, 640, 480); f.DMABuf = nil; return f }(), vga, "no DMABUF"},
		{"other pixel format", func() *media.Frame { f := exported(640, 480, 640, 480); f.Format = media.PixelFormatNV12; return f }(), vga, "conversion"},
		{"padded camera lines", exported(640, 480, 704, 480), vga, "stride"},
		{"1080 rows, encoder wants 1088", exported(1920, 1080, 1920, 1080), fm(FourCCYUV420, 1920, 1088, 1920), "holds"},
		{"1080 rows, but a camera aligned to 1088 too", exported(1920, 1080, 1920, 1088), fm(FourCCYUV420, 1920, 1088, 1920), ""},
		{"short buffer", func() *media.Frame { f := exported(640, 480, 640, 480); f.DMABuf.Length = 1000; return f }(), vga, "holds 1000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := dmabufFits(tc.f, tc.dst)
			if ok != (tc.why == "") || (tc.why != "" && !strings.Contains(why, tc.why)) {
				t.Errorf("fits %v (%q); want fits %v, reason containing %q", ok, why, tc.why == "", tc.why)
			}
		})
	}
	// A buffer long enough, but whose chroma is not where the encoder reads it.
	f := exported(1920, 1080, 1920, 1080)
	f.DMABuf.Length = 1920 * 1088 * 3 / 2
	if ok, why := dmabufFits(f, fm(FourCCYUV420, 1920, 1088, 1920)); ok || !strings.Contains(why, "plane 1 starts at byte") {
		t.Errorf("chroma at 1080 rows accepted for a 1088-row encoder: %v %q", ok, why)
	}
}

func TestH264Level(t *testing.T) {
	for _, tc := range []struct {
		w, h, fps, bps int
		want           int
	}{
		{320, 240, 15, 300_000, 12},
		{640, 480, 30, 1_000_000, 30},
		{1280, 720, 30, 2_500_000, 31},
		{1280, 720, 60, 4_000_000, 32},
		{1920, 1080, 30, 4_000_000, 40},
		{1920, 1080, 30, 25_000_000, 41},
		{1920, 1080, 60, 8_000_000, 42},
		{3840, 2160, 30, 20_000_000, 51},
		{7680, 4320, 30, 20_000_000, 52},
	} {
		if got := h264Level(tc.w, tc.h, tc.fps, tc.bps); got != tc.want {
			t.Errorf("%dx%d@%d %d bit/s: level %d; want %d", tc.w, tc.h, tc.fps, tc.bps, got, tc.want)
		}
	}
	for idc, want := range map[int]int64{10: 0, 11: 2, 30: 8, 31: 9, 40: 11, 42: 13, 51: 15, 52: 16} {
		if got := v4l2H264Level(idc); got != want {
			t.Errorf("V4L2 level for %d: %d; want %d", idc, got, want)
		}
	}
}

func TestGOP(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		fps      int
		want     int
	}{
		{0, 30, 60}, {time.Second, 30, 30}, {2 * time.Second, 25, 50},
		{10 * time.Millisecond, 30, 2}, // never 1: an I-period of 1 hangs the Pi's encoder
		{time.Second, 1, 2},
	} {
		if got := gopFrames(tc.interval, tc.fps); got != tc.want {
			t.Errorf("gopFrames(%v, %d) = %d; want %d", tc.interval, tc.fps, got, tc.want)
		}
	}
	for _, tc := range []struct{ v, lo, hi, want int64 }{{30, 1, 16, 16}, {1, 1, 16, 2}, {5, 8, 100, 8}, {60, 0, 1 << 30, 60}} {
		if got := clampGOP(tc.v, tc.lo, tc.hi); got != tc.want {
			t.Errorf("clampGOP(%d, %d, %d) = %d; want %d", tc.v, tc.lo, tc.hi, got, tc.want)
		}
	}
}

func TestStartSettings(t *testing.T) {
	cfg := encoder.Config{Width: 1280, Height: 720, FPS: 30, BitrateBps: 2_000_000, KeyframeInterval: 2 * time.Second}
	ctrls := func(s []setting) []control {
		var out []control
		for _, x := range s {
			out = append(out, x.ctrl)
		}
		return out
	}
	value := func(s []setting, c control) []int64 {
		for _, x := range s {
			if x.ctrl == c {
				return x.values
			}
		}
		return nil
	}
	h := startSettings(FourCCH264, cfg, Options{})
	if want := []control{ctrlH264Profile, ctrlH264Level, ctrlBitrateMode, ctrlBitrate, ctrlGOPSize, ctrlH264IPeriod,
		ctrlBFrames, ctrlHeaderMode, ctrlRepeatSeqHeader, ctrlPrependSPSPPS}; !slices.Equal(ctrls(h), want) {
		t.Errorf("H.264 settings %v; want %v", ctrls(h), want)
	}
	for c, want := range map[control][]int64{
		ctrlH264Profile: {h264ProfileConstrainedBase, h264ProfileBaseline}, ctrlH264Level: {9},
		ctrlBitrateMode: {bitrateModeCBR, bitrateModeVBR}, ctrlBitrate: {2_000_000}, ctrlGOPSize: {60},
		ctrlH264IPeriod: {60}, ctrlBFrames: {0}, ctrlRepeatSeqHeader: {1},
	} {
		if got := value(h, c); !slices.Equal(got, want) {
			t.Errorf("H.264 %v = %v; want %v", c, got, want)
		}
	}
	f := startSettings(FourCCFWHT, cfg, Options{IQP: 10, PQP: 12})
	if want := []control{ctrlBitrateMode, ctrlBitrate, ctrlGOPSize, ctrlBFrames, ctrlRepeatSeqHeader, ctrlFWHTIQP, ctrlFWHTPQP}; !slices.Equal(ctrls(f), want) {
		t.Errorf("FWHT settings %v; want %v", ctrls(f), want)
	}
	if got := value(startSettings(FourCCH264, cfg, Options{PQP: 30}), ctrlH264PQP); !slices.Equal(got, []int64{30}) {
		t.Errorf("H.264 P QP %v; want [30]", got)
	}
	for c := range numControls {
		if strings.HasPrefix(c.String(), "control(") {
			t.Errorf("control %d has no name", int(c))
		}
	}
}

func fwhtFrame(flags uint32) []byte {
	b := make([]byte, fwhtHeaderSize+8)
	binary.BigEndian.PutUint32(b[0:], 0x4f4f4f4f)
	binary.BigEndian.PutUint32(b[4:], 0xffffffff)
	binary.BigEndian.PutUint32(b[8:], 3)
	binary.BigEndian.PutUint32(b[12:], 1920)
	binary.BigEndian.PutUint32(b[16:], 1080)
	binary.BigEndian.PutUint32(b[20:], flags)
	binary.BigEndian.PutUint32(b[40:], 8)
	return b
}

var (
	nalSPS   = []byte{0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x8c}
	nalPPS   = []byte{0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80}
	nalIDR   = []byte{0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00}
	nalSlice = []byte{0, 0, 0, 1, 0x41, 0x9a, 0x02}
	nalSEI   = []byte{0, 0, 0, 1, 0x06, 0x05, 0x01, 0x80}
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestBitstream(t *testing.T) {
	h, ok := parseFWHT(fwhtFrame(fwhtFlagIFrame))
	if !ok || h.Width != 1920 || h.Height != 1080 || h.Size != 8 {
		t.Errorf("parseFWHT: %+v %v", h, ok)
	}
	for _, tc := range []struct {
		name  string
		codec FourCC
		data  []byte
		key   bool
	}{
		{"FWHT I-frame", FourCCFWHT, fwhtFrame(fwhtFlagIFrame | 1<<8), true},
		{"FWHT P-frame", FourCCFWHT, fwhtFrame(1 << 8), false},
		{"FWHT garbage", FourCCFWHT, []byte("not a frame header, not at all, long enough though"), false},
		{"H.264 IDR with parameter sets", FourCCH264, cat(nalSPS, nalPPS, nalIDR), true},
		{"H.264 P slice", FourCCH264, nalSlice, false},
		{"unknown codec", v4l2.MakeFourCC('V', 'P', '8', '0'), nalIDR, false},
	} {
		if got := codedKeyframe(tc.codec, tc.data); got != tc.key {
			t.Errorf("%s: keyframe %v; want %v", tc.name, got, tc.key)
		}
	}
	for _, tc := range []struct {
		data []byte
		vcl  bool
	}{{cat(nalSPS, nalPPS), false}, {cat(nalSEI), false}, {cat(nalSPS, nalPPS, nalIDR), true}, {nalSlice, true}, {nil, false}} {
		if got := hasVCL(tc.data); got != tc.vcl {
			t.Errorf("hasVCL(% x) = %v; want %v", tc.data, got, tc.vcl)
		}
	}
}

func TestTimestampsAndBackoff(t *testing.T) {
	for _, id := range []uint64{1, 999_999, 1_000_000, 123_456_789_012} {
		if got := timevalToID(idToTimeval(id)); got != id {
			t.Errorf("id %d came back as %d", id, got)
		}
	}
	want := []time.Duration{0, 0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for failures, w := range want {
		if got := reopenDelay(failures); got != w {
			t.Errorf("reopenDelay(%d) = %v; want %v", failures, got, w)
		}
	}
}
