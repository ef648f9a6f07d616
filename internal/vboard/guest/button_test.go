//go:build vboardguest && linux

package guest

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestVBoardPL061PowerButton checks the arm64 board end to end: QEMU's virt machine wires its
// power button to line 3 of the PL061 GPIO controller (gpiochip0), and the host presses it
// (QMP system_powerdown) when it reads VBOARD-READY-FOR-BUTTON on the console. A press is a
// rising and then a falling edge.
func TestVBoardPL061PowerButton(t *testing.T) {
	onBoard(t)
	if runtime.GOARCH != "arm64" {
		t.Skip("the PL061 power button is on the arm64 virt board")
	}
	f, err := os.Open("/dev/gpiochip0")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var info gpiochipInfo
	if err := ioctl(int(f.Fd()), gpioGetChipInfoIoctl, unsafe.Pointer(&info)); err != nil {
		t.Fatalf("GPIO_GET_CHIPINFO_IOCTL: %v", err)
	}
	if label := cstring(info.Label[:]); !strings.Contains(label, "pl061") {
		t.Fatalf("gpiochip0 is %q, not the PL061", label)
	}

	req := gpioV2LineRequest{NumLines: 1}
	req.Offsets[0] = 3
	copy(req.Consumer[:], "vboard-button")
	req.Config.Flags = gpioV2LineFlagInput | gpioV2LineFlagEdgeRising | gpioV2LineFlagEdgeFalling
	if err := ioctl(int(f.Fd()), gpioV2GetLineIoctl, unsafe.Pointer(&req)); err != nil {
		t.Fatalf("GPIO_V2_GET_LINE_IOCTL for line 3: %v", err)
	}
	defer unix.Close(int(req.FD))

	fmt.Println("VBOARD-READY-FOR-BUTTON")
	var got []uint32
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: req.FD, Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds())); err != nil && err != unix.EINTR {
			t.Fatalf("poll: %v", err)
		} else if n == 0 {
			break
		}
		var ev gpioV2LineEvent
		if _, err := unix.Read(int(req.FD), unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev))); err != nil {
			t.Fatalf("read an edge event: %v", err)
		}
		t.Logf("line %d: event %d at %d ns", ev.Offset, ev.ID, ev.TimestampNs)
		got = append(got, ev.ID)
	}
	if !slices.Equal(got, []uint32{gpioV2LineEventRising, gpioV2LineEventFalling}) {
		t.Fatalf("edges %v in 60 s, want a rising then a falling one (1 = rising, 2 = falling)", got)
	}
}
