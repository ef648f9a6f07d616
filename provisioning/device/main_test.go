package device

import (
	"os"
	"testing"
)

// TestMain lets the test binary play two other programs for the tests that need a real,
// separate process: the applier that the power-cut test kills, and a stand-in for edged.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envPowerCutChild) != "":
		powerCutChild()
		os.Exit(0)
	case os.Getenv(envFakeEdged) != "":
		os.Exit(fakeEdged(os.Getenv(envFakeEdged)))
	}
	os.Exit(m.Run())
}
