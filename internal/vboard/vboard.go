// Package vboard is the virtual board: it boots QEMU (TCG) with a kernel that has real V4L2
// and GPIO drivers (vivid, vicodec, vim2m and gpio-sim in the x86-64 test kernel; PL061 in
// Debian's arm64 kernel) and an initramfs that runs the module's in-guest tests, and reads
// their outcome back from the serial console.
//
// In-guest tests are ordinary Go tests in _test.go files with the build tag vboardguest and
// names starting with TestVBoard. The host-side tests of this package (build tag vboard)
// compile them as static test binaries, pack them with busybox (Initramfs, BaseInitramfs),
// write an /init that runs each one between console markers (InitScript), boot the guest
// (Boot) and turn each package's bracket into a subtest (Results). QMP lets a host test act
// on the board while it runs, e.g. press its power button (QMP system_powerdown).
//
// The kernel is built by kernel/build.sh and cached outside the checkout (CacheDir).
package vboard
