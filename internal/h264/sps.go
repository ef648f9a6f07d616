package h264

import (
	"fmt"
)

// MaxDimension bounds the picture width and height ParseSPS accepts, far above any level's
// limit, so arithmetic on the sizes cannot overflow and nonsense dimensions are rejected.
const MaxDimension = 16384

// SPS holds the sequence parameter set fields that decide whether a browser can decode a stream.
type SPS struct {
	ProfileIDC uint8
	// ConstraintFlags is the byte after profile_idc: constraint_set0_flag in bit 0x80 down to
	// constraint_set5_flag in 0x04, then two reserved bits.
	ConstraintFlags uint8
	LevelIDC        uint8
	// ChromaFormatIDC is 0 (monochrome), 1 (4:2:0), 2 (4:2:2) or 3 (4:4:4); browsers decode 1.
	ChromaFormatIDC uint8
	// BitDepthLuma is the luma sample bit depth, 8 to 14; browsers decode 8.
	BitDepthLuma uint8
	// Width and Height are the displayed picture size, after frame cropping; each is between 1
	// and MaxDimension.
	Width, Height int
	// FrameMBSOnly is false for a stream that may code fields (interlaced).
	FrameMBSOnly bool
}

// ConstrainedBaseline reports whether the SPS is Constrained Baseline: profile_idc 66 with
// constraint_set1_flag, the profile every WebRTC browser must decode.
func (s SPS) ConstrainedBaseline() bool {
	return s.ProfileIDC == 66 && s.ConstraintFlags&0x40 != 0
}

// ProfileLevelID returns profile_idc, the constraint flags and level_idc as the 6 hex digits of
// an SDP fmtp profile-level-id (RFC 6184), e.g. "42e01f".
func (s SPS) ProfileLevelID() string {
	const hexDigits = "0123456789abcdef"
	var b [6]byte
	for i, v := range [3]uint8{s.ProfileIDC, s.ConstraintFlags, s.LevelIDC} {
		b[2*i] = hexDigits[v>>4]
		b[2*i+1] = hexDigits[v&0xf]
	}
	return string(b[:])
}

// spsReader is a bitReader with a sticky error that names the field that failed, which keeps
// the long field sequence of an SPS readable.
type spsReader struct {
	bitReader
	err error
}

func (r *spsReader) fail(field string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: sps %s", err, field)
	}
}

func (r *spsReader) u(n int, field string) uint32 {
	if r.err != nil {
		return 0
	}
	v, err := r.bits(n)
	if err != nil {
		r.fail(field, err)
	}
	return v
}

func (r *spsReader) flag(field string) bool {
	return r.u(1, field) == 1
}

// ue reads an unsigned exp-Golomb field and rejects values above max.
func (r *spsReader) ue(field string, max uint32) uint32 {
	if r.err != nil {
		return 0
	}
	v, err := r.bitReader.ue()
	if err != nil {
		r.fail(field, err)
		return 0
	}
	if v > max {
		r.fail(field, fmt.Errorf("%w: %d > %d", ErrInvalid, v, max))
		return 0
	}
	return v
}

func (r *spsReader) se(field string) int64 {
	if r.err != nil {
		return 0
	}
	v, err := r.bitReader.se()
	if err != nil {
		r.fail(field, err)
	}
	return v
}

// scalingList skips one scaling_list() (7.3.2.1.1.1); only its length in bits matters here.
func (r *spsReader) scalingList(size int) {
	last, next := int64(8), int64(8)
	for range size {
		if next != 0 {
			delta := r.se("delta_scale")
			if r.err != nil {
				return
			}
			if delta < -128 || delta > 127 {
				r.fail("delta_scale", fmt.Errorf("%w: %d out of -128..127", ErrInvalid, delta))
				return
			}
			next = (last + delta + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}

// highProfile reports whether profile_idc carries chroma_format_idc and the other fields of the
// high profiles in its SPS (7.3.2.1.1).
func highProfile(p uint8) bool {
	switch p {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		return true
	}
	return false
}

// ParseSPS parses a sequence parameter set NAL unit, given with its 1-byte header and without a
// start code, up to vui_parameters_present_flag; the VUI is not read. Emulation prevention bytes
// are handled. Errors wrap ErrTruncated or ErrInvalid.
func ParseSPS(nal []byte) (SPS, error) {
	if len(nal) == 0 {
		return SPS{}, fmt.Errorf("%w: empty sps", ErrTruncated)
	}
	if t := Type(nal); t != NALSPS {
		return SPS{}, fmt.Errorf("%w: nal type %v is not SPS", ErrInvalid, t)
	}
	r := spsReader{bitReader: bitReader{b: nal[1:]}}
	var s SPS
	s.ProfileIDC = uint8(r.u(8, "profile_idc"))
	s.ConstraintFlags = uint8(r.u(8, "constraint flags"))
	s.LevelIDC = uint8(r.u(8, "level_idc"))
	r.ue("seq_parameter_set_id", 31)

	chroma := uint32(1) // inferred when absent
	separatePlanes := false
	s.BitDepthLuma = 8
	if highProfile(s.ProfileIDC) {
		chroma = r.ue("chroma_format_idc", 3)
		if chroma == 3 {
			separatePlanes = r.flag("separate_colour_plane_flag")
		}
		s.BitDepthLuma = 8 + uint8(r.ue("bit_depth_luma_minus8", 6))
		r.ue("bit_depth_chroma_minus8", 6)
		r.flag("qpprime_y_zero_transform_bypass_flag")
		if r.flag("seq_scaling_matrix_present_flag") {
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if r.flag("seq_scaling_list_present_flag") {
					size := 16
					if i >= 6 {
						size = 64
					}
					r.scalingList(size)
				}
			}
		}
	}
	s.ChromaFormatIDC = uint8(chroma)

	r.ue("log2_max_frame_num_minus4", 12)
	switch r.ue("pic_order_cnt_type", 2) {
	case 0:
		r.ue("log2_max_pic_order_cnt_lsb_minus4", 12)
	case 1:
		r.flag("delta_pic_order_always_zero_flag")
		r.se("offset_for_non_ref_pic")
		r.se("offset_for_top_to_bottom_field")
		n := r.ue("num_ref_frames_in_pic_order_cnt_cycle", 255)
		for range n {
			r.se("offset_for_ref_frame")
		}
	}
	r.ue("max_num_ref_frames", 16)
	r.flag("gaps_in_frame_num_value_allowed_flag")
	const maxMBs = MaxDimension / 16
	widthMBs := int(r.ue("pic_width_in_mbs_minus1", maxMBs-1)) + 1
	heightMapUnits := int(r.ue("pic_height_in_map_units_minus1", maxMBs-1)) + 1
	s.FrameMBSOnly = r.flag("frame_mbs_only_flag")
	if !s.FrameMBSOnly {
		r.flag("mb_adaptive_frame_field_flag")
	}
	r.flag("direct_8x8_inference_flag")
	var cropLeft, cropRight, cropTop, cropBottom uint32
	if r.flag("frame_cropping_flag") {
		cropLeft = r.ue("frame_crop_left_offset", MaxDimension)
		cropRight = r.ue("frame_crop_right_offset", MaxDimension)
		cropTop = r.ue("frame_crop_top_offset", MaxDimension)
		cropBottom = r.ue("frame_crop_bottom_offset", MaxDimension)
	}
	// Read so that an SPS cut off before its end is reported as truncated.
	r.flag("vui_parameters_present_flag")
	if r.err != nil {
		return SPS{}, r.err
	}

	fieldFactor := 1
	if !s.FrameMBSOnly {
		fieldFactor = 2
	}
	codedW := widthMBs * 16
	codedH := fieldFactor * heightMapUnits * 16
	if codedH > MaxDimension {
		return SPS{}, fmt.Errorf("%w: sps coded height %d > %d", ErrInvalid, codedH, MaxDimension)
	}
	// Crop offsets count in chroma samples (7.4.2.1.1): CropUnitX/Y.
	cropX, cropY := 1, fieldFactor
	if !separatePlanes && chroma != 0 {
		subW, subH := 2, 2
		switch chroma {
		case 2:
			subH = 1
		case 3:
			subW, subH = 1, 1
		}
		cropX, cropY = subW, subH*fieldFactor
	}
	cropW := cropX * int(cropLeft+cropRight)
	cropH := cropY * int(cropTop+cropBottom)
	if cropW >= codedW || cropH >= codedH {
		return SPS{}, fmt.Errorf("%w: sps cropping %dx%d leaves nothing of %dx%d", ErrInvalid, cropW, cropH, codedW, codedH)
	}
	s.Width = codedW - cropW
	s.Height = codedH - cropH
	return s, nil
}
