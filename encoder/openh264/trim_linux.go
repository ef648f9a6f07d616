//go:build cgo && linux

package openh264

/*
#include <features.h>
#ifdef __GLIBC__
#include <malloc.h>
static void edge_release_memory(void) { malloc_trim(0); }
#else
static void edge_release_memory(void) {}
#endif
*/
import "C"

// releaseMemory hands what the C allocator holds free back to the system: a closed encoder
// leaves megabytes of frame buffers there, which glibc would keep for the process.
func releaseMemory() { C.edge_release_memory() }
