package camera

import (
	"slices"
	"strconv"
	"strings"
)

// V4L2 capability bits (videodev2.h).
const (
	capVideoCapture       = 0x00000001
	capVideoOutput        = 0x00000002
	capVideoCaptureMplane = 0x00001000
	capVideoOutputMplane  = 0x00002000
	capVideoM2MMplane     = 0x00004000
	capVideoM2M           = 0x00008000
	capMetaCapture        = 0x00800000
	capStreaming          = 0x04000000
	capDeviceCaps         = 0x80000000
)

// nodeCaps picks the capabilities of this node from a VIDIOC_QUERYCAP answer: capabilities
// covers the whole physical device (so a UVC metadata node would look like a camera), while
// device_caps, when present, describes just this node.
func nodeCaps(capabilities, deviceCaps uint32) uint32 {
	if capabilities&capDeviceCaps != 0 {
		return deviceCaps
	}
	return capabilities
}

// captureKind says whether a node with these capabilities is a camera: "" if it is, else
// what it is instead. Memory-to-memory devices (encoders, scalers) also capture, but from
// what is written to them; a node that both captures and outputs is one too on older drivers.
func captureKind(caps uint32) string {
	switch {
	case caps&(capVideoM2M|capVideoM2MMplane) != 0,
		caps&(capVideoCapture|capVideoCaptureMplane) != 0 && caps&(capVideoOutput|capVideoOutputMplane) != 0:
		return "a memory-to-memory device (encoder, decoder or scaler)"
	case caps&capMetaCapture != 0 && caps&(capVideoCapture|capVideoCaptureMplane) == 0:
		return "a metadata node"
	case caps&(capVideoCapture|capVideoCaptureMplane) == 0:
		return "not a video capture node"
	case caps&capStreaming == 0:
		return "a capture node without streaming I/O"
	}
	return ""
}

// sortDevices orders /dev/video2 before /dev/video10.
func sortDevices(paths []string) {
	num := func(p string) (int, bool) {
		i := strings.LastIndex(p, "video")
		if i < 0 {
			return 0, false
		}
		n, err := strconv.Atoi(p[i+len("video"):])
		return n, err == nil
	}
	slices.SortFunc(paths, func(a, b string) int {
		na, okA := num(a)
		nb, okB := num(b)
		switch {
		case okA && okB && na != nb:
			return na - nb
		case okA != okB: // numbered nodes first, then symlinks such as /dev/video-front
			if okA {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
}
