//go:build vboardguest && linux

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestVBoardKernelHasDrivers checks the x86-64 test kernel: the V4L2 test drivers made their
// /dev/video* nodes, and a gpio-sim chip made through configfs appears as a /dev/gpiochip*.
func TestVBoardKernelHasDrivers(t *testing.T) {
	onBoard(t)
	t.Run("v4l2", func(t *testing.T) {
		nodes, _ := filepath.Glob("/dev/video*")
		drivers := map[string][]string{}
		for _, node := range nodes {
			c, err := queryCap(node)
			if err != nil {
				t.Errorf("%s: %v", node, err)
				continue
			}
			name, _ := os.ReadFile("/sys/class/video4linux/" + filepath.Base(node) + "/name")
			t.Logf("%s: driver %s, card %s, name %s, device caps %#x", node, cstring(c.Driver[:]), cstring(c.Card[:]), strings.TrimSpace(string(name)), c.DeviceCaps)
			drivers[cstring(c.Driver[:])] = append(drivers[cstring(c.Driver[:])], node)
		}
		for _, want := range []string{"vivid", "vicodec", "vim2m"} {
			if len(drivers[want]) == 0 {
				t.Errorf("no /dev/video* node of the %s driver (nodes: %v)", want, nodes)
			}
		}
	})
	t.Run("gpio-sim", func(t *testing.T) {
		chip := gpioSim(t, "vboard-smoke", 8)
		f, err := os.Open("/dev/" + chip)
		if err != nil {
			t.Fatalf("open the gpio-sim chip: %v", err)
		}
		defer f.Close()
		var info gpiochipInfo
		if err := ioctl(int(f.Fd()), gpioGetChipInfoIoctl, unsafe.Pointer(&info)); err != nil {
			t.Fatalf("GPIO_GET_CHIPINFO_IOCTL on /dev/%s: %v", chip, err)
		}
		t.Logf("/dev/%s: name %s, label %s, %d lines", chip, cstring(info.Name[:]), cstring(info.Label[:]), info.Lines)
		if info.Lines != 8 {
			t.Errorf("/dev/%s has %d lines, want 8", chip, info.Lines)
		}
	})
}

func queryCap(node string) (v4l2Capability, error) {
	var c v4l2Capability
	fd, err := unix.Open(node, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return c, fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	if err := ioctl(fd, vidiocQueryCap, unsafe.Pointer(&c)); err != nil {
		return c, fmt.Errorf("VIDIOC_QUERYCAP: %w", err)
	}
	if c.Capabilities&v4l2CapDeviceCaps == 0 {
		c.DeviceCaps = c.Capabilities
	}
	return c, nil
}

// gpioSim creates a live gpio-sim chip with one bank of lines through configfs, removes it
// when the test ends, and returns its character device's name ("gpiochipN").
func gpioSim(t *testing.T, name string, lines int) string {
	t.Helper()
	dev := "/sys/kernel/config/gpio-sim/" + name
	bank := dev + "/bank0"
	for _, dir := range []string{dev, bank} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("create gpio-sim chip (is configfs mounted on /sys/kernel/config?): %v", err)
		}
	}
	t.Cleanup(func() {
		os.WriteFile(dev+"/live", []byte("0"), 0)
		os.Remove(bank)
		os.Remove(dev)
	})
	write := func(file, value string) {
		if err := os.WriteFile(file, []byte(value), 0); err != nil {
			t.Fatalf("gpio-sim: %v", err)
		}
	}
	write(bank+"/num_lines", strconv.Itoa(lines))
	write(dev+"/live", "1")
	chip, err := os.ReadFile(bank + "/chip_name")
	if err != nil {
		t.Fatalf("gpio-sim: %v", err)
	}
	name = strings.TrimSpace(string(chip))
	chips, _ := filepath.Glob("/dev/gpiochip*")
	if !slices.Contains(chips, "/dev/"+name) {
		t.Fatalf("gpio-sim made %s, but /dev has %v", name, chips)
	}
	return name
}
