package vboard

import (
	"os/exec"
	"strings"
	"testing"
)

func TestQuoteIsOneShellWord(t *testing.T) {
	for _, s := range []string{"", "plain", "^TestVBoard$", "it's", "a b\tc", `$HOME "x" \n`} {
		out, err := exec.Command("sh", "-c", "printf %s "+quote(s)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != s {
			t.Errorf("sh read %q back as %q", s, out)
		}
	}
}

func TestInitScriptRunsEachStepInBrackets(t *testing.T) {
	script := string(InitScript([]string{"EDGED_LOG_LEVEL=debug"}, []Step{
		GuestTest("device/camera", "/tests/device/camera.test", "/pkg/device/camera", "^TestVBoard"),
		{Name: "edged-version", Args: []string{"/bin/edged", "-version"}},
	}))
	for _, want := range []string{
		"#!/bin/sh\n",
		"VBOARD=1",
		"mount -t devtmpfs devtmpfs /dev",
		"export 'EDGED_LOG_LEVEL=debug'",
		"step 'device/camera' '/pkg/device/camera' '/tests/device/camera.test' '-test.v' '-test.run' '^TestVBoard' '-test.timeout' '5m'\n",
		"step 'edged-version' '/' '/bin/edged' '-version'\n",
		"echo VBOARD-DONE\nreboot -f\n",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("/init lacks %q:\n%s", want, script)
		}
	}
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("/init is not valid sh: %v\n%s", err, out)
	}
}
