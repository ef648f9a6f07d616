//go:build vboardguest && linux

package guest

import (
	"bytes"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The few structures and ioctls of the V4L2 and GPIO uAPIs these tests use
// (include/uapi/linux/videodev2.h and gpio.h).

type v4l2Capability struct {
	Driver       [16]byte
	Card         [32]byte
	BusInfo      [32]byte
	Version      uint32
	Capabilities uint32
	DeviceCaps   uint32
	Reserved     [3]uint32
}

type gpiochipInfo struct {
	Name  [32]byte
	Label [32]byte
	Lines uint32
}

type gpioV2LineAttribute struct {
	ID      uint32
	Padding uint32
	Value   uint64
}

type gpioV2LineConfigAttribute struct {
	Attr gpioV2LineAttribute
	Mask uint64
}

type gpioV2LineConfig struct {
	Flags    uint64
	NumAttrs uint32
	Padding  [5]uint32
	Attrs    [10]gpioV2LineConfigAttribute
}

type gpioV2LineRequest struct {
	Offsets         [64]uint32
	Consumer        [32]byte
	Config          gpioV2LineConfig
	NumLines        uint32
	EventBufferSize uint32
	Padding         [5]uint32
	FD              int32
}

type gpioV2LineEvent struct {
	TimestampNs uint64
	ID          uint32
	Offset      uint32
	Seqno       uint32
	LineSeqno   uint32
	Padding     [6]uint32
}

const (
	vidiocQueryCap       = 0x80685600 // _IOR('V', 0, struct v4l2_capability)
	gpioGetChipInfoIoctl = 0x8044b401 // _IOR(0xB4, 0x01, struct gpiochip_info)
	gpioV2GetLineIoctl   = 0xc250b407 // _IOWR(0xB4, 0x07, struct gpio_v2_line_request)

	v4l2CapDeviceCaps = 0x80000000

	gpioV2LineFlagInput       = 1 << 2
	gpioV2LineFlagEdgeRising  = 1 << 4
	gpioV2LineFlagEdgeFalling = 1 << 5
	gpioV2LineEventRising     = 1
	gpioV2LineEventFalling    = 2
)

func TestUAPISizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"v4l2_capability", unsafe.Sizeof(v4l2Capability{}), 104},
		{"gpiochip_info", unsafe.Sizeof(gpiochipInfo{}), 68},
		{"gpio_v2_line_request", unsafe.Sizeof(gpioV2LineRequest{}), 592},
		{"gpio_v2_line_event", unsafe.Sizeof(gpioV2LineEvent{}), 48},
	} {
		if c.got != c.want {
			t.Errorf("sizeof(struct %s) = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// onBoard skips a test outside the virtual board.
func onBoard(t *testing.T) {
	t.Helper()
	if os.Getenv("VBOARD") != "1" {
		t.Skip("runs inside the virtual board only (VBOARD=1): go test -tags vboard ./internal/vboard")
	}
}
