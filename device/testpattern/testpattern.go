// Package testpattern is a synthetic camera: moving I420 pictures with the frame number and
// capture time drawn into them as a block barcode, so a test can read both back after encoding,
// sending and decoding.
package testpattern

import (
	"context"
	"fmt"
	"time"

	"github.com/edgeflux/edge/internal/media"
)

// MaxDimension bounds Config.Width and Height so that a typo cannot allocate gigabytes.
const MaxDimension = 8192

// Motion per frame, in pixels. Even, so that luma and half-resolution chroma stay aligned.
const (
	barsSpeed = 4 // color bars scroll left
	rampSpeed = 2 // gray ramp at the bottom scrolls right
	boxSpeedX = 6
	boxSpeedY = 4
)

// ringSize is how many frame buffers Draw cycles through: a frame stays intact for the next
// two Draw calls, which lets a consumer look at the previous frame while the next is drawn.
const ringSize = 3

// 75% color bars, BT.601 limited range: white, yellow, cyan, green, magenta, red, blue, black.
// Strings, because they can be constants and indexed like arrays.
const (
	barsLuma = "\xb4\xa2\x83\x70\x54\x41\x23\x10" // 180 162 131 112 84 65 35 16
	barsCb   = "\x80\x2c\x9c\x48\xb8\x64\xd4\x80" // 128 44 156 72 184 100 212 128
	barsCr   = "\x80\x8e\x2c\x3a\xc6\xd4\x72\x80" // 128 142 44 58 198 212 114 128
)

// Box color: a saturated red that stands out on every bar.
const (
	boxLuma = 82
	boxCb   = 90
	boxCr   = 240
)

// Config describes the pictures a Source produces.
type Config struct {
	Width, Height int // even, at least 64 and at most MaxDimension
	FPS           int // at least 1
}

// Source draws test pictures. It is not safe for concurrent use: Run and Draw share the frame
// buffers.
type Source struct {
	cfg    Config
	layout layout
	frames [ringSize]media.Frame
	next   int // index in frames of the buffer Draw fills next

	// Rows precomputed in New so that Draw only copies: pattern rows are two periods long and
	// copied from an offset to scroll.
	barsY, barsCb, barsCr []byte
	rampY                 []byte
	grayRow               []byte // width bytes of neutral, for band and chroma rows
	bitRow                []byte // one barcode pixel row, rebuilt per block row
	boxY, boxCb, boxCr    []byte // inner rows of the box: color between white edges
	boxEdgeY, boxEdgeC    []byte // top and bottom rows: white, neutral chroma
	boxSide, boxBorder    int
	rampTop               int // first luma row of the gray ramp
}

// New returns a Source for cfg. Besides the limits in Config, the picture must be tall enough
// for the barcode band to take at most half of it (e.g. 160x120 works, 128x96 does not).
func New(cfg Config) (*Source, error) {
	w, h := cfg.Width, cfg.Height
	if w < 64 || h < 64 || w%2 != 0 || h%2 != 0 || w > MaxDimension || h > MaxDimension {
		return nil, fmt.Errorf("testpattern: size %dx%d must be even and within 64..%d", w, h, MaxDimension)
	}
	if cfg.FPS < 1 {
		return nil, fmt.Errorf("testpattern: fps %d < 1", cfg.FPS)
	}
	l := barcodeLayout(w)
	if band := l.bandHeight(); band > h/2 {
		return nil, fmt.Errorf("testpattern: %dx%d too small: the barcode band needs %d rows", w, h, band)
	}
	s := &Source{cfg: cfg, layout: l}
	cw := w / 2

	s.barsY = make([]byte, 2*w)
	s.rampY = make([]byte, 2*w)
	s.barsCb = make([]byte, 2*cw)
	s.barsCr = make([]byte, 2*cw)
	for x := range 2 * w {
		// Bars are chosen per chroma column so luma and chroma edges coincide.
		bar := (x % w / 2) * 8 / cw
		s.barsY[x] = barsLuma[bar]
		s.rampY[x] = byte(lumaBlack + (x%w)*(lumaWhite-lumaBlack)/(w-1))
	}
	for x := range 2 * cw {
		bar := (x % cw) * 8 / cw
		s.barsCb[x] = barsCb[bar]
		s.barsCr[x] = barsCr[bar]
	}
	s.grayRow = boxRow(w, 0, neutral, 0)
	s.bitRow = make([]byte, w)

	contentTop := l.bandHeight()
	s.rampTop = (h - (h-contentTop)/4) &^ 1
	// The white edge keeps the box visible on the bar of its own color.
	s.boxSide = max(8, min(w, h)/6&^1)
	s.boxBorder = max(2, s.boxSide/12&^1)
	s.boxY = boxRow(s.boxSide, s.boxBorder, boxLuma, lumaWhite)
	s.boxCb = boxRow(s.boxSide/2, s.boxBorder/2, boxCb, neutral)
	s.boxCr = boxRow(s.boxSide/2, s.boxBorder/2, boxCr, neutral)
	s.boxEdgeY = boxRow(s.boxSide, 0, lumaWhite, 0)
	s.boxEdgeC = boxRow(s.boxSide/2, 0, neutral, 0)
	return s, nil
}

// boxRow returns n bytes of v with border bytes of edge at both ends.
func boxRow(n, border int, v, edge byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = v
		if i < border || i >= n-border {
			b[i] = edge
		}
	}
	return b
}

// Config returns the configuration the Source was made with.
func (s *Source) Config() Config { return s.cfg }

// Draw renders frame number seq with capture time t into the next of the Source's frame
// buffers and returns it. It is exported so benchmarks can generate frames without pacing. The
// frame is overwritten by the third Draw call after this one; the picture depends only on seq
// and t.
func (s *Source) Draw(seq uint64, t time.Time) *media.Frame {
	f := &s.frames[s.next]
	s.next = (s.next + 1) % ringSize
	s.draw(f, seq, t)
	return f
}

// draw renders frame number seq into f, giving f its buffer the first time: Run uses one
// buffer only (a frame is valid until emit returns), so the daemon holds one picture, not three.
func (s *Source) draw(f *media.Frame, seq uint64, t time.Time) {
	w, h := s.cfg.Width, s.cfg.Height
	if f.Planes[0] == nil {
		cw, ch := w/2, h/2
		buf := make([]byte, w*h+2*cw*ch)
		*f = media.Frame{
			Format: media.PixelFormatI420, Width: w, Height: h,
			Planes:  [3][]byte{buf[:w*h], buf[w*h : w*h+cw*ch], buf[w*h+cw*ch:]},
			Strides: [3]int{w, cw, cw},
		}
	}
	f.Seq = seq
	f.CaptureTime = t
	cw := w / 2
	yp, cb, cr := f.Planes[0], f.Planes[1], f.Planes[2]
	l := s.layout
	band := l.bandHeight()

	// Barcode band: build each block row once, then copy it down the block's pixel rows.
	p := payload(seq, t)
	for r := range l.rows {
		row := s.bitRow
		copy(row, s.grayRow)
		for c := range l.cols {
			i := r*l.cols + c
			if i >= barcodeBits {
				break
			}
			v := byte(lumaBlack)
			if p[i/8]&(0x80>>(i%8)) != 0 {
				v = lumaWhite
			}
			blk := row[c*l.block : (c+1)*l.block]
			for j := range blk {
				blk[j] = v
			}
		}
		for y := r * l.block; y < (r+1)*l.block; y++ {
			copy(yp[y*w:(y+1)*w], row)
		}
	}
	for y := l.rows * l.block; y < band; y++ {
		copy(yp[y*w:(y+1)*w], s.grayRow)
	}
	for y := range band / 2 {
		copy(cb[y*cw:(y+1)*cw], s.grayRow[:cw])
		copy(cr[y*cw:(y+1)*cw], s.grayRow[:cw])
	}

	// Scrolling bars, then the gray ramp scrolling the other way.
	off := int(seq * barsSpeed % uint64(w))
	for y := band; y < s.rampTop; y++ {
		copy(yp[y*w:(y+1)*w], s.barsY[off:off+w])
	}
	for y := band / 2; y < s.rampTop/2; y++ {
		copy(cb[y*cw:(y+1)*cw], s.barsCb[off/2:off/2+cw])
		copy(cr[y*cw:(y+1)*cw], s.barsCr[off/2:off/2+cw])
	}
	off = int((uint64(w) - seq*rampSpeed%uint64(w)) % uint64(w))
	for y := s.rampTop; y < h; y++ {
		copy(yp[y*w:(y+1)*w], s.rampY[off:off+w])
	}
	for y := s.rampTop / 2; y < h/2; y++ {
		copy(cb[y*cw:(y+1)*cw], s.grayRow[:cw])
		copy(cr[y*cw:(y+1)*cw], s.grayRow[:cw])
	}

	// Bouncing box over the content, at even coordinates for chroma.
	side, border := s.boxSide, s.boxBorder
	bx := bounce(seq*boxSpeedX, w-side) &^ 1
	by := band + bounce(seq*boxSpeedY, h-band-side)&^1
	for y := range side {
		row := s.boxY
		if y < border || y >= side-border {
			row = s.boxEdgeY
		}
		copy(yp[(by+y)*w+bx:], row)
	}
	for y := range side / 2 {
		rowCb, rowCr := s.boxCb, s.boxCr
		if y < border/2 || y >= (side-border)/2 {
			rowCb, rowCr = s.boxEdgeC, s.boxEdgeC
		}
		copy(cb[(by/2+y)*cw+bx/2:], rowCb)
		copy(cr[(by/2+y)*cw+bx/2:], rowCr)
	}
}

// bounce maps a distance travelled to a position going back and forth over 0..span.
func bounce(d uint64, span int) int {
	if span <= 0 {
		return 0
	}
	p := int(d % uint64(2*span))
	if p > span {
		p = 2*span - p
	}
	return p
}

// Run produces frames paced at the configured FPS until ctx is done, calling emit for each with
// CaptureTime set to when the frame was drawn; frames are I420 and Seq counts from 0. A frame is
// valid only until emit returns. If emit is slower than the frame interval, the ticks that
// passed meanwhile are skipped rather than delivered in a burst, but Seq stays consecutive; two
// frames are never less than half an interval apart. Run returns nil when ctx is done.
func (s *Source) Run(ctx context.Context, emit func(*media.Frame)) error {
	interval := time.Second / time.Duration(s.cfg.FPS)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	next := time.Now() // the schedule is anchored here so it does not drift
	for seq := uint64(0); ; seq++ {
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		captured := time.Now()
		s.draw(&s.frames[0], seq, captured)
		emit(&s.frames[0])
		// The next frame goes out at the first tick that is at least half an interval after
		// this one (no back-to-back frames after a late wake-up) and at most half an interval
		// in the past (ticks missed during a slow emit are dropped, not served in a burst).
		next = next.Add(interval)
		lower := captured.Add(interval / 2)
		if stale := time.Now().Add(-interval / 2); stale.After(lower) {
			lower = stale
		}
		if behind := lower.Sub(next); behind > 0 {
			next = next.Add((behind + interval - 1) / interval * interval)
		}
	}
}
