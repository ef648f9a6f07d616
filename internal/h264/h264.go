// Package h264 parses the parts of an H.264 Annex-B byte stream that the appliance checks and
// repairs: NAL unit boundaries and types, and the SPS fields that decide browser compatibility.
package h264

import (
	"bytes"
	"strconv"
)

// NALType is nal_unit_type, the low 5 bits of a NAL unit's first byte.
type NALType uint8

// NAL unit types the appliance looks at (ITU-T H.264 table 7-1).
const (
	NALSlice NALType = 1 // coded slice of a non-IDR picture
	NALIDR   NALType = 5 // coded slice of an IDR picture
	NALSEI   NALType = 6
	NALSPS   NALType = 7
	NALPPS   NALType = 8
	NALAUD   NALType = 9 // access unit delimiter
)

func (t NALType) String() string {
	switch t {
	case NALSlice:
		return "slice"
	case NALIDR:
		return "IDR"
	case NALSEI:
		return "SEI"
	case NALSPS:
		return "SPS"
	case NALPPS:
		return "PPS"
	case NALAUD:
		return "AUD"
	default:
		return "NALType(" + strconv.Itoa(int(t)) + ")"
	}
}

// Type returns the type of a NAL unit given without its start code, or 0 for an empty one.
func Type(nal []byte) NALType {
	if len(nal) == 0 {
		return 0
	}
	return NALType(nal[0] & 0x1f)
}

// nextNAL finds the first NAL unit in b at or after offset from. It returns the unit as
// b[start:end] and the offset to continue from, or ok=false when no further unit exists. Bytes
// before the first start code are not a NAL unit and are skipped; zero bytes in front of a start
// code (the 4-byte form, trailing_zero_8bits) are not part of the unit before it; empty units are
// skipped.
func nextNAL(b []byte, from int) (start, end, next int, ok bool) {
	start = startCodeEnd(b, from)
	for start >= 0 {
		sc := startCodeEnd(b, start)
		end = len(b)
		next = len(b)
		if sc >= 0 {
			end = sc - 3
			next = end
		}
		for end > start && b[end-1] == 0 {
			end--
		}
		if end > start {
			return start, end, next, true
		}
		start = sc
	}
	return 0, 0, len(b), false
}

// startCodeEnd returns the offset just past the first 00 00 01 at or after from, or -1.
func startCodeEnd(b []byte, from int) int {
	// Look for the 0x01 with the SIMD-backed IndexByte and check the two zeros in front: much
	// faster than a byte loop on slice data, where 0x01 is rare.
	for i := from + 2; i < len(b); {
		j := bytes.IndexByte(b[i:], 1)
		if j < 0 {
			return -1
		}
		i += j
		if b[i-1] == 0 && b[i-2] == 0 {
			return i + 1
		}
		i++
	}
	return -1
}

// SplitAnnexB returns the NAL units of an Annex-B byte stream, without their 3- or 4-byte start
// codes, as sub-slices of b. Bytes before the first start code are ignored, so data without any
// start code yields nil. Trailing zero bytes of a unit are dropped and empty units are skipped.
// The only allocation is the result slice.
func SplitAnnexB(b []byte) [][]byte {
	n := 0
	for pos := 0; ; n++ {
		_, _, next, ok := nextNAL(b, pos)
		if !ok {
			break
		}
		pos = next
	}
	if n == 0 {
		return nil
	}
	nals := make([][]byte, 0, n)
	for pos := 0; ; {
		start, end, next, ok := nextNAL(b, pos)
		if !ok {
			break
		}
		nals = append(nals, b[start:end:end])
		pos = next
	}
	return nals
}

// IsKeyframe reports whether the Annex-B access unit au contains an IDR slice.
func IsKeyframe(au []byte) bool {
	for pos := 0; ; {
		start, _, next, ok := nextNAL(au, pos)
		if !ok {
			return false
		}
		if Type(au[start:]) == NALIDR {
			return true
		}
		pos = next
	}
}

// EnsureParameterSets returns au unchanged if it is not a keyframe or already has an SPS and a
// PPS before its first IDR slice. Otherwise it returns a new Annex-B access unit with sps and pps
// (NAL units without start codes) inserted in front, after a leading access unit delimiter if
// there is one, since the AUD must stay first. Browsers decode nothing without in-band SPS/PPS,
// so the encoder wrapper uses this as a guard. If sps or pps is empty, au is returned unchanged
// because there is nothing valid to insert.
func EnsureParameterSets(au []byte, sps, pps []byte) []byte {
	if len(sps) == 0 || len(pps) == 0 {
		return au
	}
	var hasSPS, hasPPS, idr bool
	insertAt := -1 // end of a leading AUD, else where the first start code begins
	for pos := 0; ; {
		start, end, next, ok := nextNAL(au, pos)
		if !ok {
			break
		}
		if insertAt < 0 {
			if Type(au[start:]) == NALAUD {
				insertAt = end
			} else {
				// Before the first start code and its leading zeros, so whatever precedes it
				// stays outside the inserted units.
				insertAt = start - 3
				for insertAt > 0 && au[insertAt-1] == 0 {
					insertAt--
				}
			}
		}
		switch Type(au[start:]) {
		case NALSPS:
			hasSPS = true
		case NALPPS:
			hasPPS = true
		case NALIDR:
			idr = true
		}
		if idr {
			break
		}
		pos = next
	}
	if !idr || (hasSPS && hasPPS) {
		return au
	}
	out := make([]byte, 0, len(au)+len(sps)+len(pps)+8)
	out = append(out, au[:insertAt]...)
	out = append(out, 0, 0, 0, 1)
	out = append(out, sps...)
	out = append(out, 0, 0, 0, 1)
	out = append(out, pps...)
	return append(out, au[insertAt:]...)
}
