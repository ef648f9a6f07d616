package camera

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/edgeflux/edge/internal/media"
)

// Source is a camera for a pipeline: every Run opens the device, streams and closes it again.
// A pipeline runs a failed source again after a backoff, so an unplugged camera comes back
// when it is plugged in again, and a wedged stream (a stall, failed buffers) is reset, without
// restarting the daemon. Closing matters: a device node that went away (ENODEV) is usable again
// only through a new descriptor, and some drivers return only once the last one is closed.
type Source struct {
	cfg  Config
	log  *slog.Logger
	open func(Config, *slog.Logger) (*Camera, error) // Open; a fake in tests

	mu      sync.Mutex
	running bool
	cam     *Camera // open while a Run streams
	closed  Stats   // of the cameras opened and closed so far
	size    [2]int  // the picture size the stream is set up for; zero until known

	// Owned by the running Run.
	nextSeq uint64 // Frame.Seq keeps counting across opens
	down    bool   // the last Run failed: say so when frames flow again
}

// NewSource makes a source for cfg; nothing is opened until Probe or Run.
func NewSource(cfg Config, log *slog.Logger) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, log: log, open: Open}
}

// Probe opens the device to negotiate its mode, and closes it again, so the caller can set up
// the encoder before any frame flows. Every later Run must deliver the size returned, or,
// when Probe fails, Config's size: that is what the caller sets up for. A Run whose device
// negotiates another size (a different camera was plugged in) fails with ErrModeChanged.
func (s *Source) Probe() (Mode, error) {
	cam, err := s.open(s.cfg, s.log)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.size = [2]int{s.cfg.Width, s.cfg.Height}
		return Mode{}, err
	}
	m := cam.Mode()
	s.size = [2]int{m.Width, m.Height}
	if err := cam.Close(); err != nil {
		s.log.Debug("camera close after probe failed", "err", err)
	}
	return m, nil
}

// Run opens the device, captures until ctx is done or capture fails, and closes the device.
// Frames are as Camera.Run delivers them, with Seq counting on across opens. Run returns nil
// when ctx is done, and otherwise why it stopped, for the caller to run it again later. Runs
// must not overlap.
func (s *Source) Run(ctx context.Context, emit func(*media.Frame)) error {
	if emit == nil {
		return fmt.Errorf("camera: run %s: nil emit", s.cfg.Device)
	}
	cam, err := s.begin()
	if err != nil {
		s.down = true
		return err
	}
	base := s.nextSeq
	err = cam.Run(ctx, func(f *media.Frame) {
		f.Seq += base
		s.nextSeq = f.Seq + 1
		if s.down {
			s.down = false
			s.log.Info("camera capturing again", "device", cam.device, "seq", f.Seq)
		}
		emit(f)
	})
	if cerr := cam.Close(); cerr != nil {
		s.log.Debug("camera close failed", "device", cam.device, "err", cerr)
	}
	s.end(cam)
	if err != nil {
		s.down = true
	}
	return err
}

func (s *Source) begin() (*Camera, error) {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return nil, fmt.Errorf("camera: run %s: %w", s.cfg.Device, ErrRunning)
	}
	s.running = true
	s.mu.Unlock()

	cam, err := s.open(s.cfg, s.log)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.running = false
		return nil, err
	}
	m := cam.Mode()
	if s.size == ([2]int{}) {
		s.size = [2]int{m.Width, m.Height}
	}
	if s.size != [2]int{m.Width, m.Height} {
		s.running = false
		cam.Close()
		return nil, fmt.Errorf("camera: %s: %w: it now delivers %dx%d, the stream is set up for %dx%d; restart edged to change it",
			cam.device, ErrModeChanged, m.Width, m.Height, s.size[0], s.size[1])
	}
	s.cam = cam
	return cam, nil
}

func (s *Source) end(cam *Camera) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = s.closed.add(cam.Stats())
	s.cam, s.running = nil, false
}

// Stats counts over every open of the device so far. Safe from any goroutine.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.closed
	if s.cam != nil {
		st = st.add(s.cam.Stats())
	}
	return st
}

func (a Stats) add(b Stats) Stats {
	return Stats{
		Frames:       a.Frames + b.Frames,
		ShortBuffers: a.ShortBuffers + b.ShortBuffers,
		ErrorBuffers: a.ErrorBuffers + b.ErrorBuffers,
		Dropped:      a.Dropped + b.Dropped,
		Untimed:      a.Untimed + b.Untimed,
	}
}
