package device

import (
	"os"
	"os/exec"
	"testing"
)

// newChild runs this test binary again with env set; TestMain turns it into the child program.
func newChild(t testing.TB, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}
