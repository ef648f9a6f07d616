//go:build linux

package probe

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeflux/edge/internal/v4l2"
)

// The V4L2 structs and ioctls the probe needs (videodev2.h), in pure Go.
type v4l2FmtDesc struct {
	index       uint32
	typ         uint32
	flags       uint32
	description [32]byte
	pixelFormat uint32
	mbusCode    uint32
	reserved    [3]uint32
}

type v4l2FrmSizeEnum struct {
	index       uint32
	pixelFormat uint32
	typ         uint32
	u           [6]uint32 // discrete: width, height; stepwise: min/max/step width, min/max/step height
	reserved    [2]uint32
}

// v4l2Format: the union after type holds pointers (v4l2_window), so it is pointer-aligned:
// 208 bytes on 64-bit kernels, 204 on 32-bit.
type v4l2Format struct {
	typ uint32
	fmt struct {
		_   [0]uintptr
		raw [200]byte // pix and pix_mp both start width, height, pixelformat
	}
}

const (
	iocRead  = 2
	iocRW    = 3
	iocShift = 30

	vidiocEnumFmt        = iocRW<<iocShift | uintptr(unsafe.Sizeof(v4l2FmtDesc{}))<<16 | 'V'<<8 | 2
	vidiocSFmt           = iocRW<<iocShift | uintptr(unsafe.Sizeof(v4l2Format{}))<<16 | 'V'<<8 | 5
	vidiocEnumFrameSizes = iocRW<<iocShift | uintptr(unsafe.Sizeof(v4l2FrmSizeEnum{}))<<16 | 'V'<<8 | 74

	capVideoCapture   = 0x00000001
	capVideoOutput    = 0x00000002
	capVideoCaptureMP = 0x00001000
	capVideoOutputMP  = 0x00002000
	capVideoM2MMP     = 0x00004000
	capVideoM2M       = 0x00008000
	capStreaming      = 0x04000000
	capDeviceCaps     = 0x80000000

	bufTypeCapture   = 1
	bufTypeOutput    = 2
	bufTypeCaptureMP = 9
	bufTypeOutputMP  = 10

	fmtFlagCompressed = 0x0001

	frmSizeDiscrete = 1
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error { return v4l2.Ioctl(fd, req, arg) }

// Discover describes every /dev/video* node, in numeric order. A node that cannot be asked
// is listed with Kind KindOther and Err set; only a failure to list /dev is an error.
func Discover() ([]Device, error) { return discover("/dev/video*") }

func discover(pattern string) ([]Device, error) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("probe: list %s: %w", pattern, err)
	}
	slices.SortFunc(paths, func(a, b string) int {
		na, ea := strconv.Atoi(strings.TrimPrefix(filepath.Base(a), "video"))
		nb, eb := strconv.Atoi(strings.TrimPrefix(filepath.Base(b), "video"))
		if ea == nil && eb == nil && na != nb {
			return na - nb
		}
		return strings.Compare(a, b)
	})
	var out []Device
	for _, p := range paths {
		d, err := Query(p)
		if err != nil {
			d = Device{Path: p, Kind: KindOther, Err: err.Error()}
		}
		out = append(out, d)
	}
	return out, nil
}

// Query describes one node. On a memory-to-memory encoder it sets the CAPTURE format to
// H.264 (or its first coded format) on its own file handle, which is private to this open,
// to enumerate the raw formats that go with it.
func Query(path string) (Device, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return Device{}, fmt.Errorf("probe: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	c, err := v4l2.QueryCap(fd)
	if err != nil {
		return Device{}, fmt.Errorf("probe: %s VIDIOC_QUERYCAP: %w", path, err)
	}
	caps := c.Capabilities
	if caps&capDeviceCaps != 0 {
		caps = c.DeviceCaps
	}
	d := Device{Path: path, Driver: c.Driver, Card: c.Card, BusInfo: c.BusInfo}
	capture := caps&(capVideoCapture|capVideoCaptureMP) != 0
	output := caps&(capVideoOutput|capVideoOutputMP) != 0
	m2m := caps&(capVideoM2M|capVideoM2MMP) != 0 || (capture && output)
	d.MPlane = caps&(capVideoM2MMP|capVideoCaptureMP|capVideoOutputMP) != 0 && caps&(capVideoM2M|capVideoCapture|capVideoOutput) == 0
	capType, outType := uint32(bufTypeCapture), uint32(bufTypeOutput)
	if d.MPlane {
		capType, outType = bufTypeCaptureMP, bufTypeOutputMP
	}
	var errs []error
	switch {
	case m2m:
		d.Capture, err = enumFormats(fd, capType)
		errs = append(errs, err)
		raw, err := enumFormats(fd, outType)
		errs = append(errs, err)
		capCompressed := slices.ContainsFunc(d.Capture, func(f Format) bool { return f.Compressed })
		outCompressed := slices.ContainsFunc(raw, func(f Format) bool { return f.Compressed })
		switch {
		case capCompressed && !outCompressed:
			d.Kind = KindEncoder
			coded := d.Capture[slices.IndexFunc(d.Capture, func(f Format) bool { return f.Compressed })].FourCC
			if _, ok := d.captures(FourCCH264); ok {
				coded = FourCCH264
			}
			// dev-encoder.rst: OUTPUT lists the raw formats of the coded format on CAPTURE.
			if err := setFormat(fd, capType, coded, 1280, 720); err != nil {
				errs = append(errs, fmt.Errorf("VIDIOC_S_FMT CAPTURE %v: %w", coded, err))
			} else {
				d.Output, err = enumFormats(fd, outType)
				errs = append(errs, err)
				d.OutputFor = coded
			}
		case outCompressed:
			d.Kind, d.Output = KindDecoder, raw
		default:
			d.Kind, d.Output = KindConverter, raw
		}
	case capture && caps&capStreaming != 0:
		d.Kind = KindCamera
		d.Capture, err = enumFormats(fd, capType)
		errs = append(errs, err)
	default:
		d.Kind = KindOther
	}
	if err := errors.Join(errs...); err != nil {
		d.Err = err.Error()
	}
	return d, nil
}

func enumFormats(fd int, typ uint32) ([]Format, error) {
	var out []Format
	for i := uint32(0); i < 256; i++ {
		desc := v4l2FmtDesc{index: i, typ: typ}
		if err := ioctl(fd, vidiocEnumFmt, unsafe.Pointer(&desc)); err != nil {
			if errors.Is(err, unix.EINVAL) {
				return out, nil
			}
			return out, fmt.Errorf("VIDIOC_ENUM_FMT type %d: %w", typ, err)
		}
		f := Format{FourCC: FourCC(desc.pixelFormat), Description: v4l2.CString(desc.description[:]), Compressed: desc.flags&fmtFlagCompressed != 0}
		f.Sizes = enumSizes(fd, desc.pixelFormat)
		out = append(out, f)
	}
	return out, nil
}

// enumSizes lists a format's frame sizes; drivers without VIDIOC_ENUM_FRAMESIZES give none.
func enumSizes(fd int, fourcc uint32) []Size {
	var out []Size
	for i := uint32(0); i < 64; i++ {
		e := v4l2FrmSizeEnum{index: i, pixelFormat: fourcc}
		if err := ioctl(fd, vidiocEnumFrameSizes, unsafe.Pointer(&e)); err != nil {
			return out
		}
		u := e.u
		if e.typ == frmSizeDiscrete {
			out = append(out, Size{MinWidth: int(u[0]), MaxWidth: int(u[0]), MinHeight: int(u[1]), MaxHeight: int(u[1])})
			continue
		}
		return append(out, Size{MinWidth: int(u[0]), MaxWidth: int(u[1]), StepWidth: int(u[2]),
			MinHeight: int(u[3]), MaxHeight: int(u[4]), StepHeight: int(u[5])})
	}
	return out
}

func setFormat(fd int, typ uint32, fourcc FourCC, w, h int) error {
	f := v4l2Format{typ: typ}
	*(*[3]uint32)(unsafe.Pointer(&f.fmt.raw[0])) = [3]uint32{uint32(w), uint32(h), uint32(fourcc)}
	return ioctl(fd, vidiocSFmt, unsafe.Pointer(&f))
}
