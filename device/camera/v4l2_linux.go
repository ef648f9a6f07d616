package camera

import (
	"fmt"
	"math"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/internal/v4l2"
)

// The V4L2 ABI this package speaks itself (videodev2.h): the queries blackjack/webcam does
// not offer, format and rate setting on the descriptor that streams, and the streaming
// ioctls, whose buffer timestamps, sequence numbers and flags blackjack throws away.
// Request codes use the generic _IOC encoding (arm, arm64, x86, riscv), as blackjack's do.

const (
	bufTypeVideoCapture = 1
	memoryMMAP          = 1

	// v4l2_buffer flags.
	bufFlagError              = 0x00000040 // the driver says the contents are bad
	bufFlagTimestampMask      = 0x0000e000
	bufFlagTimestampMonotonic = 0x00002000 // CLOCK_MONOTONIC, the kernel's default

	capTimePerFrame = 0x1000 // v4l2_captureparm.capability: S_PARM sets the frame interval
)

type v4l2PixFormat struct {
	width, height, pixelformat, field, bytesperline, sizeimage uint32
	colorspace, priv, flags, encoding, quantization, xferFunc  uint32
}

// v4l2Format is struct v4l2_format with the pix member of its union. The union holds
// pointers elsewhere, so it is pointer-aligned: 208 bytes on 64-bit, 204 on 32-bit.
type v4l2Format struct {
	typ uint32
	_   [0]uintptr
	pix v4l2PixFormat
	_   [200 - unsafe.Sizeof(v4l2PixFormat{})]byte
}

type v4l2FrmSizeEnum struct {
	index, pixelFormat, typ uint32
	// discrete: width, height; stepwise and continuous: min_width, max_width, step_width,
	// min_height, max_height, step_height
	u        [6]uint32
	reserved [2]uint32
}

const (
	frmSizeDiscrete   = 1
	frmSizeContinuous = 2
	frmSizeStepwise   = 3
)

// v4l2StreamParm is struct v4l2_streamparm with the capture member of its union (no
// pointers in it: 4-byte aligned, 204 bytes everywhere).
type v4l2StreamParm struct {
	typ          uint32
	capability   uint32
	captureMode  uint32
	timePerFrame fract // seconds per frame
	extendedMode uint32
	readBuffers  uint32
	reserved     [4]uint32
	_            [200 - 40]byte
}

type v4l2RequestBuffers struct {
	count, typ, memory, capabilities uint32
	flags                            uint8
	reserved                         [3]uint8
}

type v4l2Timecode struct {
	typ, flags                      uint32
	frames, seconds, minutes, hours uint8
	userbits                        [4]uint8
}

// v4l2Buffer is struct v4l2_buffer. Its timeval is the C library's: unix.Timeval has the
// same size on every GOARCH (64-bit fields on 64-bit, the kernel's time32 layout on 32-bit).
type v4l2Buffer struct {
	index, typ, bytesused, flags, field uint32
	timestamp                           unix.Timeval
	timecode                            v4l2Timecode
	sequence                            uint32
	memory                              uint32
	// m is the union of offset (MMAP), userptr, planes and fd: its 32-bit members sit at
	// its start on either byte order, and it is as wide and aligned as a pointer.
	_         [0]uintptr
	m         uint32
	_         [unsafe.Sizeof(uintptr(0)) - 4]byte
	length    uint32
	reserved2 uint32
	requestFD int32
}

type v4l2ExportBuffer struct {
	typ, index, plane, flags uint32
	fd                       int32
	reserved                 [11]uint32
}

// _IOC(dir, 'V', nr, size) with dir 1 = write, 2 = read, 3 = read and write.
const (
	vidiocGFmt           = 3<<30 | unsafe.Sizeof(v4l2Format{})<<16 | 'V'<<8 | 4
	vidiocSFmt           = 3<<30 | unsafe.Sizeof(v4l2Format{})<<16 | 'V'<<8 | 5
	vidiocReqBufs        = 3<<30 | unsafe.Sizeof(v4l2RequestBuffers{})<<16 | 'V'<<8 | 8
	vidiocQueryBuf       = 3<<30 | unsafe.Sizeof(v4l2Buffer{})<<16 | 'V'<<8 | 9
	vidiocQBuf           = 3<<30 | unsafe.Sizeof(v4l2Buffer{})<<16 | 'V'<<8 | 15
	vidiocExpBuf         = 3<<30 | unsafe.Sizeof(v4l2ExportBuffer{})<<16 | 'V'<<8 | 16
	vidiocDQBuf          = 3<<30 | unsafe.Sizeof(v4l2Buffer{})<<16 | 'V'<<8 | 17
	vidiocStreamOn       = 1<<30 | unsafe.Sizeof(int32(0))<<16 | 'V'<<8 | 18
	vidiocStreamOff      = 1<<30 | unsafe.Sizeof(int32(0))<<16 | 'V'<<8 | 19
	vidiocGParm          = 3<<30 | unsafe.Sizeof(v4l2StreamParm{})<<16 | 'V'<<8 | 21
	vidiocSParm          = 3<<30 | unsafe.Sizeof(v4l2StreamParm{})<<16 | 'V'<<8 | 22
	vidiocEnumFrameSizes = 3<<30 | unsafe.Sizeof(v4l2FrmSizeEnum{})<<16 | 'V'<<8 | 74
)

// ioctl issues one request, retrying when a signal interrupts it, and returns the errno.
func ioctl(fd int, req uintptr, arg unsafe.Pointer) error { return v4l2.Ioctl(fd, req, arg) }

func getFormat(fd int) (v4l2PixFormat, error) {
	f := v4l2Format{typ: bufTypeVideoCapture}
	if err := ioctl(fd, vidiocGFmt, unsafe.Pointer(&f)); err != nil {
		return v4l2PixFormat{}, fmt.Errorf("VIDIOC_G_FMT: %w", err)
	}
	return f.pix, nil
}

// setFormat asks for a pixel format and size; the driver may adjust both.
func setFormat(fd int, code fourCC, width, height int) error {
	f := v4l2Format{typ: bufTypeVideoCapture}
	f.pix = v4l2PixFormat{width: uint32(width), height: uint32(height), pixelformat: uint32(code), field: 1} // V4L2_FIELD_NONE: progressive
	if err := ioctl(fd, vidiocSFmt, unsafe.Pointer(&f)); err != nil {
		return fmt.Errorf("VIDIOC_S_FMT: %w", err)
	}
	return nil
}

// setFrameRate asks for fps and returns the rate the driver set. A driver without a frame
// interval setting (many CSI pipelines) returns an error, and its current rate when it
// reports one (0 when not).
func setFrameRate(fd int, fps float64) (float64, error) {
	p := v4l2StreamParm{typ: bufTypeVideoCapture}
	if err := ioctl(fd, vidiocGParm, unsafe.Pointer(&p)); err != nil {
		return 0, fmt.Errorf("VIDIOC_G_PARM: %w", err)
	}
	if p.capability&capTimePerFrame == 0 {
		return rate(p.timePerFrame), fmt.Errorf("VIDIOC_S_PARM: the driver runs at its own rate: %w", unix.ENOTTY)
	}
	p.timePerFrame = fract{1000, uint32(math.Round(fps * 1000))}
	if err := ioctl(fd, vidiocSParm, unsafe.Pointer(&p)); err != nil {
		return 0, fmt.Errorf("VIDIOC_S_PARM: %w", err)
	}
	return rate(p.timePerFrame), nil
}

// rate turns a frame interval into frames per second, 0 when it is unset.
func rate(interval fract) float64 {
	if s := interval.seconds(); s > 0 {
		return 1 / s
	}
	return 0
}

func enumFrameSize(fd int, code, index uint32) (sizeRange, error) {
	e := v4l2FrmSizeEnum{index: index, pixelFormat: code}
	if err := ioctl(fd, vidiocEnumFrameSizes, unsafe.Pointer(&e)); err != nil {
		return sizeRange{}, fmt.Errorf("VIDIOC_ENUM_FRAMESIZES: %w", err)
	}
	u := e.u
	switch e.typ {
	case frmSizeDiscrete:
		return discreteSize(int(u[0]), int(u[1])), nil
	case frmSizeContinuous, frmSizeStepwise:
		return sizeRange{minW: int(u[0]), maxW: int(u[1]), stepW: int(u[2]),
			minH: int(u[3]), maxH: int(u[4]), stepH: int(u[5])}, nil
	}
	return sizeRange{}, fmt.Errorf("VIDIOC_ENUM_FRAMESIZES: unknown type %d", e.typ)
}
