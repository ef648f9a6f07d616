package encoder

import (
	"sync"
	"time"

	"github.com/edgeflux/edge/internal/media"
)

// Lazy is an Encoder that opens its backend at the first frame and closes it after idle
// time without frames: a simulcast layer nobody receives costs no memory. Its methods are
// safe for concurrent use (the idle close runs on a timer).
type Lazy struct {
	name string
	idle time.Duration
	open func() (Encoder, error)

	mu       sync.Mutex
	enc      Encoder
	bitrate  int
	lastUse  time.Time
	reaper   *time.Timer
	closed   bool
	Opens    int // how many times the backend was opened, for tests
	closeErr error
}

// NewLazy returns an encoder named name that opens with open when first needed and closes
// after idle without a frame.
func NewLazy(name string, idle time.Duration, open func() (Encoder, error)) *Lazy {
	return &Lazy{name: name, idle: idle, open: open}
}

// Encode opens the backend if needed and encodes f.
func (l *Lazy) Encode(f *media.Frame) (media.AccessUnit, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enc == nil {
		enc, err := l.open()
		if err != nil {
			return media.AccessUnit{}, err
		}
		if l.bitrate > 0 {
			_ = enc.SetBitrate(l.bitrate)
		}
		l.enc = enc
		l.Opens++
	}
	l.lastUse = time.Now()
	if l.reaper == nil && !l.closed {
		l.reaper = time.AfterFunc(l.idle, l.reap)
	}
	return l.enc.Encode(f)
}

// reap closes the backend once it has been idle long enough.
func (l *Lazy) reap() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enc == nil || l.closed {
		l.reaper = nil
		return
	}
	if wait := l.idle - time.Since(l.lastUse); wait > 0 {
		l.reaper.Reset(wait)
		return
	}
	l.closeErr = l.enc.Close()
	l.enc, l.reaper = nil, nil
}

// Open reports whether the backend is open now.
func (l *Lazy) Open() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc != nil
}

// RequestKeyframe makes the next frame an IDR (a newly opened backend starts with one anyway).
func (l *Lazy) RequestKeyframe() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enc != nil {
		l.enc.RequestKeyframe()
	}
}

// SetBitrate sets the bitrate now, and for a backend opened later.
func (l *Lazy) SetBitrate(bps int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bitrate = bps
	if l.enc != nil {
		return l.enc.SetBitrate(bps)
	}
	return nil
}

// Name is the backend's name, known without opening it.
func (l *Lazy) Name() string { return l.name }

// Close closes the backend if it is open.
func (l *Lazy) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.reaper != nil {
		l.reaper.Stop()
		l.reaper = nil
	}
	if l.enc != nil {
		err := l.enc.Close()
		l.enc = nil
		return err
	}
	return l.closeErr
}
