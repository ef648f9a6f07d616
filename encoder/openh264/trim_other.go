//go:build cgo && !linux

package openh264

// releaseMemory has nothing to do where the C allocator returns memory by itself.
func releaseMemory() {}
