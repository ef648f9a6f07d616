package camera

import (
	"math"
	"testing"

	"github.com/edgeflux/edge/internal/media"
)

// FuzzNegotiate checks that whatever a driver reports, negotiation neither panics nor picks
// a mode the device did not offer.
func FuzzNegotiate(f *testing.F) {
	f.Add([]byte{0, 0, 5, 0, 2, 208, 2, 30, 0}, uint16(1280), uint16(720), uint8(30), uint8(0))
	f.Add([]byte{1, 1, 0, 16, 16, 0, 16, 0, 16, 16, 0, 16, 3, 1, 60, 1, 5, 1, 60}, uint16(1281), uint16(721), uint8(25), uint8(2))
	f.Add([]byte{2, 0, 0, 1, 0, 1, 255, 255, 255, 255, 0, 0}, uint16(64), uint16(64), uint8(1), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, w, h uint16, fps, format uint8) {
		o := fuzzOffer(data)
		cfg := Config{
			Format: []string{"auto", "yuyv", "nv12", "i420"}[format%4],
			Width:  int(w), Height: int(h), FPS: int(fps),
		}
		c, err := negotiate(o, cfg)
		if err != nil {
			return
		}
		if c.fourcc.pixelFormat() == media.PixelFormatUnknown {
			t.Fatalf("chose unsupported %s", c.fourcc)
		}
		if c.fps <= 0 || math.IsInf(c.fps, 0) || math.IsNaN(c.fps) || c.reason == "" {
			t.Fatalf("bad choice %+v", c)
		}
		fo, _ := o.find(c.fourcc)
		for _, s := range fo.sizes {
			if aw, ah := s.width(), s.height(); aw.valid() && ah.valid() && aw.has(c.width) && ah.has(c.height) {
				return
			}
		}
		t.Fatalf("chose %dx%d, not among %v", c.width, c.height, fo.sizes)
	})
}

// fuzzOffer reads formats from data: a fourcc selector, a size count, sizes as six bytes
// (min, max, step per axis, scaled by 16), then a rate count and rates as three bytes.
func fuzzOffer(data []byte) offer {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	codes := []fourCC{fourCCYUYV, fourCCNV12, fourCCYU12, fourCCMJPG}
	var o offer
	var rs []rateRange
	for len(data) > 0 && len(o.formats) < 4 {
		fo := formatOffer{fourcc: codes[next()%len(codes)]}
		for range next() % 4 {
			fo.sizes = append(fo.sizes, sizeRange{
				minW: next() * 16, maxW: next() * 16, stepW: next(),
				minH: next() * 16, maxH: next() * 16, stepH: next(),
			})
		}
		o.formats = append(o.formats, fo)
		for range next() % 3 {
			a, b, c := uint32(next()), uint32(next()), uint32(next())
			rs = append(rs, rateRange{min: fract{1, a}, max: fract{1, b}, step: fract{1, c}})
		}
	}
	o.rates = func(fourCC, int, int) []rateRange { return rs }
	return o
}

// FuzzLayout checks that no reported size or stride makes fill slice out of range.
func FuzzLayout(f *testing.F) {
	f.Add(uint8(0), uint16(640), uint16(480), uint32(1280), uint32(614400))
	f.Add(uint8(1), uint16(1920), uint16(1080), uint32(2048), uint32(3317760))
	f.Add(uint8(2), uint16(33), uint16(17), uint32(0), uint32(900))
	f.Fuzz(func(t *testing.T, format uint8, w, h uint16, bpl, n uint32) {
		pf := []media.PixelFormat{media.PixelFormatYUYV, media.PixelFormatNV12, media.PixelFormatI420}[format%3]
		l, err := newLayout(pf, int(w), int(h), int(bpl))
		if err != nil {
			return
		}
		buf := make([]byte, min(n, 1<<24))
		var fr media.Frame
		if !l.fill(&fr, buf) {
			if len(buf) >= l.size {
				t.Fatalf("refused a %d byte buffer for a %d byte layout", len(buf), l.size)
			}
			return
		}
		total := 0
		for i := range l.planes {
			if len(fr.Planes[i]) != fr.Strides[i]*[]int{int(h), (int(h) + 1) / 2, (int(h) + 1) / 2}[i] {
				t.Fatalf("plane %d: %d bytes, stride %d", i, len(fr.Planes[i]), fr.Strides[i])
			}
			total += len(fr.Planes[i])
		}
		if total > len(buf) {
			t.Fatalf("planes hold %d bytes of a %d byte buffer", total, len(buf))
		}
	})
}
