//go:build linux

package probe

import (
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// The ioctl numbers and struct sizes against videodev2.h's (they encode the size).
func TestABI(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"v4l2_fmtdesc", unsafe.Sizeof(v4l2FmtDesc{}), 64},
		{"v4l2_frmsizeenum", unsafe.Sizeof(v4l2FrmSizeEnum{}), 44},
		{"VIDIOC_ENUM_FMT", vidiocEnumFmt, 0xc0405602},
		{"VIDIOC_ENUM_FRAMESIZES", vidiocEnumFrameSizes, 0xc02c564a},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %#x; want %#x", tc.name, tc.got, tc.want)
		}
	}
	// v4l2_format's union is pointer-aligned.
	want := map[string]uintptr{"amd64": 0xc0d05605, "arm64": 0xc0d05605, "arm": 0xc0cc5605, "386": 0xc0cc5605}
	if w, ok := want[runtime.GOARCH]; ok && vidiocSFmt != w {
		t.Errorf("VIDIOC_S_FMT %#x; want %#x on %s", vidiocSFmt, w, runtime.GOARCH)
	}
}

func TestDiscoverListsWhatItCannotAsk(t *testing.T) {
	devs, err := discover("/dev/nul[l]")
	if err != nil || len(devs) != 1 {
		t.Fatalf("%v, %v", devs, err)
	}
	if d := devs[0]; d.Kind != KindOther || !strings.Contains(d.Err, "VIDIOC_QUERYCAP") {
		t.Errorf("/dev/null described as %+v", d)
	}
	if devs, err := discover("/nonexistent/video*"); err != nil || len(devs) != 0 {
		t.Errorf("no nodes: %v, %v", devs, err)
	}
}
