package v4l2

import (
	"testing"
	"unsafe"
)

// TestQueryCapABI pins the struct and request to videodev2.h: a wrong size is a wrong ioctl.
func TestQueryCapABI(t *testing.T) {
	if got := unsafe.Sizeof(capability{}); got != 104 {
		t.Errorf("sizeof(v4l2_capability) = %d; want 104", got)
	}
	if vidiocQueryCap != 0x80685600 {
		t.Errorf("VIDIOC_QUERYCAP = %#x; want 0x80685600", uintptr(vidiocQueryCap))
	}
	if got := CString([]byte("vivid\x00\x00junk")); got != "vivid" {
		t.Errorf("CString = %q", got)
	}
}

func TestQueryCapOnNonV4L2(t *testing.T) {
	if _, err := QueryCap(-1); err == nil {
		t.Error("QueryCap on a bad descriptor succeeded")
	}
}
