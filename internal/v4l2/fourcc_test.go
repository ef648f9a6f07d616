package v4l2

import (
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

func TestFourCC(t *testing.T) {
	tests := []struct {
		code FourCC
		want string
	}{
		{FourCCH264, "H264"}, {FourCCYUV420, "YU12"}, {MakeFourCC('N', 'V', '1', '2'), "NV12"},
		{MakeFourCC('Y', '1', '6', ' '), "Y16"}, {0x01020304, "0x01020304"},
	}
	for _, tc := range tests {
		if got := tc.code.String(); got != tc.want {
			t.Errorf("%#x: %q; want %q", uint32(tc.code), got, tc.want)
		}
	}
	if FromPixelFormat(media.PixelFormatNV12) != FourCCNV12 || FromPixelFormat(media.PixelFormatUnknown) != 0 {
		t.Error("FromPixelFormat maps NV12 or Unknown wrongly")
	}
}
