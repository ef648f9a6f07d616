package encoder

import (
	"errors"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/media"
)

// countingEncoder is a backend that records what was done to it.
type countingEncoder struct {
	frames, closes int
	bitrate        int
}

func (c *countingEncoder) Encode(*media.Frame) (media.AccessUnit, error) {
	c.frames++
	return media.AccessUnit{Data: []byte{0, 0, 0, 1, 0x65}, Keyframe: c.frames == 1}, nil
}
func (c *countingEncoder) RequestKeyframe()         {}
func (c *countingEncoder) SetBitrate(bps int) error { c.bitrate = bps; return nil }
func (c *countingEncoder) Name() string             { return "counting" }
func (c *countingEncoder) Close() error             { c.closes++; return nil }

func TestLazyOpensOnFirstFrameAndClosesWhenIdle(t *testing.T) {
	var backends []*countingEncoder
	l := NewLazy("counting", 50*time.Millisecond, func() (Encoder, error) {
		backends = append(backends, &countingEncoder{})
		return backends[len(backends)-1], nil
	})
	if err := l.SetBitrate(300_000); err != nil {
		t.Fatal(err)
	}
	if l.Open() || len(backends) != 0 || l.Name() != "counting" {
		t.Fatal("opened before the first frame")
	}
	for range 3 {
		if _, err := l.Encode(&media.Frame{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(backends) != 1 || backends[0].frames != 3 || backends[0].bitrate != 300_000 {
		t.Fatalf("backends %+v; want one with 3 frames at the bitrate set before it opened", backends)
	}
	deadline := time.Now().Add(2 * time.Second)
	for l.Open() {
		if time.Now().After(deadline) {
			t.Fatal("still open long after the idle time")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if backends[0].closes != 1 {
		t.Errorf("closed %d times", backends[0].closes)
	}
	if _, err := l.Encode(&media.Frame{}); err != nil || len(backends) != 2 || l.Opens != 2 {
		t.Fatalf("a frame after the idle close: err %v, %d backends", err, len(backends))
	}
	if err := l.Close(); err != nil || backends[1].closes != 1 {
		t.Errorf("Close: %v, backend closed %d times", err, backends[1].closes)
	}
}

func TestLazyReportsOpenErrors(t *testing.T) {
	boom := errors.New("no encoder")
	l := NewLazy("broken", time.Second, func() (Encoder, error) { return nil, boom })
	if _, err := l.Encode(&media.Frame{}); !errors.Is(err, boom) {
		t.Fatalf("Encode: %v; want the open error", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
