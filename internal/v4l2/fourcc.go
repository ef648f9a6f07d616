// Package v4l2 holds what every V4L2 user in the appliance shares: the four-character codes
// that name pixel and coded formats, and their mapping to the pipeline's pixel formats.
package v4l2

import (
	"fmt"
	"strings"

	"github.com/edgeflux/edge/internal/media"
)

// FourCC is a V4L2 pixel format code.
type FourCC uint32

// MakeFourCC builds a code from its four characters, as v4l2_fourcc does.
func MakeFourCC(a, b, c, d byte) FourCC {
	return FourCC(uint32(a) | uint32(b)<<8 | uint32(c)<<16 | uint32(d)<<24)
}

// The codes the appliance works with.
const (
	FourCCH264   FourCC = 'H' | '2'<<8 | '6'<<16 | '4'<<24
	FourCCFWHT   FourCC = 'F' | 'W'<<8 | 'H'<<16 | 'T'<<24 // vicodec's Fast Walsh Hadamard Transform
	FourCCYUV420 FourCC = 'Y' | 'U'<<8 | '1'<<16 | '2'<<24 // I420
	FourCCNV12   FourCC = 'N' | 'V'<<8 | '1'<<16 | '2'<<24
	FourCCYUYV   FourCC = 'Y' | 'U'<<8 | 'Y'<<16 | 'V'<<24
	FourCCMJPEG  FourCC = 'M' | 'J'<<8 | 'P'<<16 | 'G'<<24
)

// String is the four characters, or the number when they are not printable.
func (f FourCC) String() string {
	b := []byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("0x%08x", uint32(f))
		}
	}
	return strings.TrimRight(string(b), " ")
}

// FromPixelFormat is the V4L2 code of a pipeline pixel format, 0 for an unknown one.
func FromPixelFormat(p media.PixelFormat) FourCC {
	switch p {
	case media.PixelFormatI420:
		return FourCCYUV420
	case media.PixelFormatNV12:
		return FourCCNV12
	case media.PixelFormatYUYV:
		return FourCCYUYV
	}
	return 0
}
