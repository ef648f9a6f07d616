package v4l2m2m

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/yuv"
	"github.com/edgeflux/edge/internal/h264"
	"github.com/edgeflux/edge/internal/media"
)

// This file is the backend's pure logic: no cgo, so it is tested on any host.

// maxPlanes bounds the memory planes of a buffer the C layer exchanges.
const maxPlanes = 4

// V4L2 buffer flags (videodev2.h; device_linux.go checks them against the header).
const (
	bufFlagKeyframe = 0x00000008
	bufFlagError    = 0x00000040
	bufFlagLast     = 0x00100000
)

// format is a v4l2_format flattened over the single- and multi-planar unions.
type format struct {
	Type          uint32
	PixelFormat   FourCC
	Width, Height uint32
	Field         uint32
	Colorspace    uint32
	NumPlanes     uint32
	BytesPerLine  [maxPlanes]uint32
	SizeImage     [maxPlanes]uint32
}

// planeSpec is where one plane of a raw picture lives in a single-memory-plane buffer.
type planeSpec struct {
	offset, stride int // bytes
	rowBytes, rows int // of the visible picture
}

// rawPlanes lays out a w x h picture of fm's format in a buffer with fm's bytes per line and
// (possibly aligned) height. Only single-memory-plane layouts are used: they are what the
// camera formats map to, and what DMABUF import of a camera buffer needs.
func rawPlanes(fm format, w, h int) ([]planeSpec, error) {
	if fm.NumPlanes > 1 {
		return nil, fmt.Errorf("raw format %v with %d memory planes is not supported", fm.PixelFormat, fm.NumPlanes)
	}
	bpl, ah := int(fm.BytesPerLine[0]), int(fm.Height)
	if bpl == 0 || ah < h || int(fm.Width) < w {
		return nil, fmt.Errorf("raw format %v %dx%d (%d bytes per line) cannot hold %dx%d",
			fm.PixelFormat, fm.Width, fm.Height, bpl, w, h)
	}
	switch fm.PixelFormat {
	case FourCCYUV420:
		c := bpl / 2
		return []planeSpec{
			{0, bpl, w, h},
			{bpl * ah, c, w / 2, h / 2},
			{bpl*ah + c*(ah/2), c, w / 2, h / 2},
		}, nil
	case FourCCNV12:
		return []planeSpec{{0, bpl, w, h}, {bpl * ah, bpl, w, h / 2}}, nil
	case FourCCYUYV:
		return []planeSpec{{0, bpl, 2 * w, h}}, nil
	case FourCCRGB24:
		return []planeSpec{{0, bpl, 3 * w, h}}, nil
	}
	return nil, fmt.Errorf("raw format %v is not supported", fm.PixelFormat)
}

// checkFrame makes sure f's planes hold what its size and strides say, so copying cannot
// slice out of range on a short buffer.
func checkFrame(f *media.Frame, specs []planeSpec) error {
	for i, s := range specs {
		if f.Strides[i] < s.rowBytes || len(f.Planes[i]) < f.Strides[i]*(s.rows-1)+s.rowBytes {
			return fmt.Errorf("frame %d %v %dx%d: plane %d too small (%d bytes, stride %d)",
				f.Seq, f.Format, f.Width, f.Height, i, len(f.Planes[i]), f.Strides[i])
		}
	}
	return nil
}

// copyFrame copies f, whose format is fm's, into dst laid out as fm says: the one CPU copy
// of the MMAP path.
func copyFrame(dst []byte, fm format, f *media.Frame) error {
	if RawFourCC(f.Format) != fm.PixelFormat {
		return fmt.Errorf("frame %d is %v, the OUTPUT queue takes %v", f.Seq, f.Format, fm.PixelFormat)
	}
	specs, err := rawPlanes(fm, f.Width, f.Height)
	if err != nil {
		return err
	}
	if err := checkFrame(f, specs); err != nil {
		return err
	}
	if need := specs[len(specs)-1].offset + specs[len(specs)-1].stride*(specs[len(specs)-1].rows-1) + specs[len(specs)-1].rowBytes; len(dst) < need {
		return fmt.Errorf("OUTPUT buffer of %d bytes is too small for %dx%d %v (%d)", len(dst), f.Width, f.Height, fm.PixelFormat, need)
	}
	for i, s := range specs {
		src, srcStride := f.Planes[i], f.Strides[i]
		if srcStride == s.stride && s.rowBytes == s.stride {
			n := s.stride * s.rows
			copy(dst[s.offset:s.offset+n], src[:n])
			continue
		}
		for row := range s.rows {
			d := s.offset + row*s.stride
			copy(dst[d:d+s.rowBytes], src[row*srcStride:row*srcStride+s.rowBytes])
		}
	}
	return nil
}

// convertFrame writes f converted to I420 into dst laid out as fm (YUV420) says. When the
// layout is tight the conversion writes straight into dst (one pass); otherwise it goes
// through scratch and is copied (two). It returns the number of passes over the picture.
func convertFrame(dst []byte, fm format, f *media.Frame, scratch *yuv.I420) (int, error) {
	if fm.PixelFormat != FourCCYUV420 {
		return 0, fmt.Errorf("frames are converted to I420 only, not %v", fm.PixelFormat)
	}
	w, h := f.Width, f.Height
	if int(fm.BytesPerLine[0]) == w && int(fm.Height) == h && len(dst) >= w*h*3/2 {
		direct := yuv.I420{Width: w, Height: h, Y: dst[:w*h], U: dst[w*h : w*h+w*h/4], V: dst[w*h+w*h/4 : w*h*3/2]}
		if err := yuv.Convert(&direct, f); err != nil {
			return 0, err
		}
		return 1, nil
	}
	if err := yuv.Convert(scratch, f); err != nil {
		return 0, err
	}
	view := media.Frame{Format: media.PixelFormatI420, Width: w, Height: h, Seq: f.Seq,
		Planes: [3][]byte{scratch.Y, scratch.U, scratch.V}, Strides: [3]int{w, w / 2, w / 2}}
	return 2, copyFrame(dst, fm, &view)
}

// dmabufFits says whether f's exported buffer can be queued as is on an OUTPUT queue of
// format fm: same pixel format, same strides, planes where the encoder looks for them, and
// large enough. When it cannot, it says why.
func dmabufFits(f *media.Frame, fm format) (bool, string) {
	if f.DMABuf == nil {
		return false, "the frame has no DMABUF"
	}
	if RawFourCC(f.Format) != fm.PixelFormat {
		return false, fmt.Sprintf("the frame is %v and the encoder takes %v (conversion needs a copy)", f.Format, fm.PixelFormat)
	}
	specs, err := rawPlanes(fm, f.Width, f.Height)
	if err != nil {
		return false, err.Error()
	}
	if f.DMABuf.Length < int(fm.SizeImage[0]) {
		return false, fmt.Sprintf("the DMABUF holds %d bytes, the encoder needs %d", f.DMABuf.Length, fm.SizeImage[0])
	}
	base := planeStart(f.Planes[0])
	for i, s := range specs {
		if f.Strides[i] != s.stride {
			return false, fmt.Sprintf("plane %d stride is %d, the encoder's is %d", i, f.Strides[i], s.stride)
		}
		if len(f.Planes[i]) == 0 {
			return false, fmt.Sprintf("plane %d is empty", i)
		}
		if off := int(planeStart(f.Planes[i]) - base); off != s.offset {
			return false, fmt.Sprintf("plane %d starts at byte %d, the encoder expects %d (the buffer height differs: %d rows)",
				i, off, s.offset, fm.Height)
		}
	}
	return true, ""
}

func planeStart(p []byte) uintptr {
	if len(p) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))
}

// h264Level returns the lowest level_idc whose limits hold w x h at fps and bps, so browsers
// that negotiate a profile-level-id accept the stream; 52 when nothing lower fits.
func h264Level(w, h, fps, bps int) int {
	// Table A-1: level_idc, max macroblocks per second, per frame, and max video bitrate in
	// kbit/s for Baseline.
	levels := [...]struct{ idc, mbps, fs, br int }{
		{10, 1485, 99, 64}, {11, 3000, 396, 192}, {12, 6000, 396, 384}, {13, 11880, 396, 768},
		{20, 11880, 396, 2000}, {21, 19800, 792, 4000}, {22, 20250, 1620, 4000},
		{30, 40500, 1620, 10000}, {31, 108000, 3600, 14000}, {32, 216000, 5120, 20000},
		{40, 245760, 8192, 20000}, {41, 245760, 8192, 50000}, {42, 522240, 8704, 50000},
		{50, 589824, 22080, 135000}, {51, 983040, 36864, 240000}, {52, 2073600, 36864, 240000},
	}
	mbw, mbh := (w+15)/16, (h+15)/16
	fs := mbw * mbh
	for _, l := range levels {
		// A frame may not be wider or taller than sqrt(8 * MaxFS) macroblocks (A.3.1).
		side := int(math.Sqrt(float64(8 * l.fs)))
		if fs <= l.fs && mbw <= side && mbh <= side && fs*fps <= l.mbps && bps <= l.br*1000 {
			return l.idc
		}
	}
	return 52
}

// v4l2H264Level maps a level_idc to V4L2_MPEG_VIDEO_H264_LEVEL_* (1B is skipped: it is never
// chosen).
func v4l2H264Level(idc int) int64 {
	switch idc {
	case 10:
		return 0
	case 11:
		return 2
	case 12:
		return 3
	case 13:
		return 4
	case 20:
		return 5
	case 21:
		return 6
	case 22:
		return 7
	case 30:
		return 8
	case 31:
		return 9
	case 32:
		return 10
	case 40:
		return 11
	case 41:
		return 12
	case 42:
		return 13
	case 50:
		return 14
	case 51:
		return 15
	}
	return 16
}

// DefaultKeyframeInterval is used when encoder.Config leaves KeyframeInterval at zero.
const DefaultKeyframeInterval = 2 * time.Second

// gopFrames turns a keyframe interval into a GOP length in frames. It is never 1: an I-frame
// period of 1 hangs the Raspberry Pi's encoder (and makes no sense for streaming).
func gopFrames(interval time.Duration, fps int) int {
	if interval <= 0 {
		interval = DefaultKeyframeInterval
	}
	return max(2, int(math.Round(interval.Seconds()*float64(max(fps, 1)))))
}

// control names the controls the backend sets; device_linux.go maps them to V4L2 IDs.
type control int

const (
	ctrlH264Profile control = iota
	ctrlH264Level
	ctrlBitrateMode
	ctrlBitrate
	ctrlGOPSize
	ctrlH264IPeriod
	ctrlBFrames
	ctrlHeaderMode
	ctrlRepeatSeqHeader
	ctrlPrependSPSPPS
	ctrlH264IQP
	ctrlH264PQP
	ctrlFWHTIQP
	ctrlFWHTPQP
	ctrlForceKeyFrame
	numControls
)

func (c control) String() string {
	switch c {
	case ctrlH264Profile:
		return "h264_profile"
	case ctrlH264Level:
		return "h264_level"
	case ctrlBitrateMode:
		return "bitrate_mode"
	case ctrlBitrate:
		return "bitrate"
	case ctrlGOPSize:
		return "gop_size"
	case ctrlH264IPeriod:
		return "h264_i_period"
	case ctrlBFrames:
		return "b_frames"
	case ctrlHeaderMode:
		return "header_mode"
	case ctrlRepeatSeqHeader:
		return "repeat_seq_header"
	case ctrlPrependSPSPPS:
		return "prepend_sps_pps_to_idr"
	case ctrlH264IQP:
		return "h264_i_frame_qp"
	case ctrlH264PQP:
		return "h264_p_frame_qp"
	case ctrlFWHTIQP:
		return "fwht_i_frame_qp"
	case ctrlFWHTPQP:
		return "fwht_p_frame_qp"
	case ctrlForceKeyFrame:
		return "force_key_frame"
	}
	return fmt.Sprintf("control(%d)", int(c))
}

// Menu values (v4l2-controls.h; checked against the header in device_linux.go).
const (
	bitrateModeVBR             = 0
	bitrateModeCBR             = 1
	h264ProfileBaseline        = 0
	h264ProfileConstrainedBase = 1
	headerModeJoined           = 1 // V4L2_MPEG_VIDEO_HEADER_MODE_JOINED_WITH_1ST_FRAME
)

// setting is one control to set before STREAMON: the preferred value first, then fallbacks
// for menus that lack it. Integer controls are clamped to the driver's range.
type setting struct {
	ctrl   control
	values []int64
}

// qpControls are the quantizer controls of a coded format.
func qpControls(codec FourCC) (i, p control, ok bool) {
	switch codec {
	case FourCCH264:
		return ctrlH264IQP, ctrlH264PQP, true
	case FourCCFWHT:
		return ctrlFWHTIQP, ctrlFWHTPQP, true
	}
	return 0, 0, false
}

// startSettings is what the backend sets before STREAMON, in order (profile before level,
// mode before bitrate). The generic codec controls are tried on every coded format; those a
// driver lacks are logged once and skipped. REPEAT_SEQ_HEADER is among them: the Raspberry
// Pi's encoder only honours it when set before STREAMON.
func startSettings(codec FourCC, cfg encoder.Config, opts Options) []setting {
	gop := int64(gopFrames(cfg.KeyframeInterval, cfg.FPS))
	var s []setting
	if codec == FourCCH264 {
		s = append(s,
			setting{ctrlH264Profile, []int64{h264ProfileConstrainedBase, h264ProfileBaseline}},
			setting{ctrlH264Level, []int64{v4l2H264Level(h264Level(cfg.Width, cfg.Height, cfg.FPS, cfg.BitrateBps))}},
		)
	}
	s = append(s,
		setting{ctrlBitrateMode, []int64{bitrateModeCBR, bitrateModeVBR}},
		setting{ctrlBitrate, []int64{int64(cfg.BitrateBps)}},
		setting{ctrlGOPSize, []int64{gop}},
	)
	if codec == FourCCH264 {
		s = append(s, setting{ctrlH264IPeriod, []int64{gop}})
	}
	s = append(s, setting{ctrlBFrames, []int64{0}})
	if codec == FourCCH264 {
		s = append(s,
			setting{ctrlHeaderMode, []int64{headerModeJoined}},
			setting{ctrlRepeatSeqHeader, []int64{1}},
			setting{ctrlPrependSPSPPS, []int64{1}},
		)
	} else {
		s = append(s, setting{ctrlRepeatSeqHeader, []int64{1}})
	}
	if i, p, ok := qpControls(codec); ok {
		if opts.IQP > 0 {
			s = append(s, setting{i, []int64{int64(opts.IQP)}})
		}
		if opts.PQP > 0 {
			s = append(s, setting{p, []int64{int64(opts.PQP)}})
		}
	}
	return s
}

// clampGOP keeps a GOP inside a driver's range but never below 2.
func clampGOP(v, lo, hi int64) int64 {
	return max(2, lo, min(v, hi))
}

// hasVCL reports whether an H.264 chunk holds a coded slice (NAL types 1 to 5), as opposed to
// parameter sets or SEI that some drivers return in a buffer of their own.
func hasVCL(data []byte) bool {
	for _, nal := range h264.SplitAnnexB(data) {
		if t := h264.Type(nal); t >= h264.NALSlice && t <= h264.NALIDR {
			return true
		}
	}
	return false
}

// FWHT frame header (vicodec's codec-fwht.h): magic, then big-endian version, width, height,
// flags, colorspace, xfer_func, ycbcr_enc, quantization, size.
const (
	fwhtHeaderSize = 44
	fwhtFlagIFrame = 1 << 10 // V4L2_FWHT_FL_I_FRAME
)

// fwhtHeader is the part of an FWHT frame header the backend reads.
type fwhtHeader struct {
	Width, Height, Flags, Size uint32
}

func parseFWHT(b []byte) (fwhtHeader, bool) {
	if len(b) < fwhtHeaderSize || binary.BigEndian.Uint32(b[0:]) != 0x4f4f4f4f || binary.BigEndian.Uint32(b[4:]) != 0xffffffff {
		return fwhtHeader{}, false
	}
	be := binary.BigEndian
	return fwhtHeader{Width: be.Uint32(b[12:]), Height: be.Uint32(b[16:]), Flags: be.Uint32(b[20:]), Size: be.Uint32(b[40:])}, true
}

// codedKeyframe reads the keyframe bit from the bitstream: drivers do not all set
// V4L2_BUF_FLAG_KEYFRAME (vicodec's encoder never does).
func codedKeyframe(codec FourCC, data []byte) bool {
	switch codec {
	case FourCCH264:
		return h264.IsKeyframe(data)
	case FourCCFWHT:
		h, ok := parseFWHT(data)
		return ok && h.Flags&fwhtFlagIFrame != 0
	}
	return false
}

// Each OUTPUT buffer gets a unique timestamp, which the driver copies to the CAPTURE buffer
// made from it. The id counts microseconds so it survives the timeval round trip exactly.
func idToTimeval(id uint64) (sec, usec int64) { return int64(id / 1e6), int64(id % 1e6) }

func timevalToID(sec, usec int64) uint64 { return uint64(sec)*1e6 + uint64(usec) }

// reopenDelay is how long a failed device rests before the next reopen: the first reopen is
// tried on the very next frame, repeated failures back off to at most 5 s.
func reopenDelay(failures int) time.Duration {
	if failures <= 1 {
		return 0
	}
	d := 250 * time.Millisecond << min(failures-2, 5)
	return min(d, 5*time.Second)
}
