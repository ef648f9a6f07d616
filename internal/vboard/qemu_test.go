package vboard

import (
	"slices"
	"strings"
	"testing"
)

func TestQEMUArgs(t *testing.T) {
	for _, c := range []struct {
		name    string
		guest   Guest
		bin     string
		want    [][2]string // an option and its value, expected somewhere
		wantErr string
	}{
		{
			name:  "x86_64 with a forwarded port",
			guest: Guest{Arch: "x86_64", Kernel: "bzImage", Initramfs: "i.gz", Memory: 512, CPUs: 1, HostFwd: []Forward{{Host: "127.0.0.1:18080", GuestPort: 8080}}},
			bin:   "qemu-system-x86_64",
			want: [][2]string{{"-accel", "tcg"}, {"-m", "512"}, {"-smp", "1"}, {"-serial", "stdio"},
				{"-append", "console=ttyS0 panic=-1 loglevel=4 rdinit=/init"},
				{"-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:18080-:8080"}},
		},
		{
			name:  "arm64 with QMP and extra command line",
			guest: Guest{Arch: "arm64", Kernel: "vmlinuz", Initramfs: "i.gz", Cmdline: "quiet", QMP: true},
			bin:   "qemu-system-aarch64",
			want: [][2]string{{"-M", "virt"}, {"-cpu", "cortex-a57"},
				{"-append", "console=ttyAMA0 panic=-1 loglevel=4 rdinit=/init quiet"},
				{"-qmp", "unix:/tmp/q.sock,server=on,wait=off"}},
		},
		{
			name:    "a forward from a non-loopback address",
			guest:   Guest{Arch: "x86_64", HostFwd: []Forward{{Host: "0.0.0.0:8080", GuestPort: 8080}}},
			wantErr: "loopback",
		},
		{
			name:    "an unknown architecture",
			guest:   Guest{Arch: "riscv64"},
			wantErr: "unknown guest architecture",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin, args, err := qemuArgs(c.guest, "/tmp/q.sock")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one about %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if bin != c.bin {
				t.Errorf("binary %s, want %s", bin, c.bin)
			}
			if !slices.Contains(args, "-no-reboot") {
				t.Errorf("no -no-reboot in %q", args)
			}
			for _, w := range c.want {
				j := slices.Index(args, w[0])
				if j < 0 || j+1 >= len(args) || args[j+1] != w[1] {
					t.Errorf("no %s %s in %q", w[0], w[1], args)
				}
			}
		})
	}
}
