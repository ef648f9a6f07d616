package camera

import (
	"slices"
	"testing"
)

func TestCaptureKind(t *testing.T) {
	tests := []struct {
		name    string
		caps    uint32 // QUERYCAP capabilities
		devCaps uint32 // QUERYCAP device_caps
		camera  bool
	}{
		{"UVC camera node", capDeviceCaps | capVideoCapture | capMetaCapture | capStreaming, capVideoCapture | capStreaming, true},
		{"UVC metadata node", capDeviceCaps | capVideoCapture | capMetaCapture | capStreaming, capMetaCapture | capStreaming, false},
		{"multi-planar CSI capture", capDeviceCaps | capVideoCaptureMplane | capStreaming, capVideoCaptureMplane | capStreaming, true},
		{"m2m encoder", capDeviceCaps | capVideoM2MMplane | capStreaming, capVideoM2MMplane | capStreaming, false},
		{"single-planar m2m", capDeviceCaps | capVideoM2M | capStreaming, capVideoM2M | capStreaming, false},
		{"old m2m with capture and output", capDeviceCaps | capVideoCaptureMplane | capVideoOutputMplane | capStreaming,
			capVideoCaptureMplane | capVideoOutputMplane | capStreaming, false},
		{"output only", capDeviceCaps | capVideoOutput | capStreaming, capVideoOutput | capStreaming, false},
		{"capture without streaming", capDeviceCaps | capVideoCapture, capVideoCapture, false},
		{"old driver without device_caps", capVideoCapture | capStreaming, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := captureKind(nodeCaps(tt.caps, tt.devCaps))
			if (kind == "") != tt.camera {
				t.Errorf("captureKind = %q, want camera=%v", kind, tt.camera)
			}
		})
	}
}

func TestSortDevices(t *testing.T) {
	got := []string{"/dev/video10", "/dev/video-front", "/dev/video2", "/dev/video0", "/dev/video1"}
	sortDevices(got)
	want := []string{"/dev/video0", "/dev/video1", "/dev/video2", "/dev/video10", "/dev/video-front"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
