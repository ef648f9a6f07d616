package v4l2

import (
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ioctl issues one request, retrying when a signal interrupts it, and returns the errno.
func Ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

// CString is a NUL-terminated kernel string field as a Go string.
func CString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Capability is what VIDIOC_QUERYCAP says about a device node.
type Capability struct {
	Driver, Card, BusInfo string
	// Capabilities are the whole device's; DeviceCaps this node's, when Capabilities has
	// V4L2_CAP_DEVICE_CAPS (0x80000000).
	Capabilities, DeviceCaps uint32
}

// capability is struct v4l2_capability (videodev2.h).
type capability struct {
	driver       [16]byte
	card         [32]byte
	busInfo      [32]byte
	version      uint32
	capabilities uint32
	deviceCaps   uint32
	reserved     [3]uint32
}

// vidiocQueryCap is _IOR('V', 0, struct v4l2_capability) in the generic encoding (arm, arm64,
// x86, riscv).
const vidiocQueryCap = 2<<30 | unsafe.Sizeof(capability{})<<16 | 'V'<<8 | 0

// QueryCap asks a node what it is.
func QueryCap(fd int) (Capability, error) {
	var c capability
	if err := Ioctl(fd, vidiocQueryCap, unsafe.Pointer(&c)); err != nil {
		return Capability{}, err
	}
	return Capability{Driver: CString(c.driver[:]), Card: CString(c.card[:]), BusInfo: CString(c.busInfo[:]),
		Capabilities: c.capabilities, DeviceCaps: c.deviceCaps}, nil
}
