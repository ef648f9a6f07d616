package camera

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/edgeflux/edge/internal/media"
)

// This file chooses a capture mode from what a device offers. It is pure so that every rule is
// unit-tested without hardware; camera_linux.go fills an offer from the device.

// fourCC is a V4L2 pixel format code: four ASCII characters, first in the low byte.
type fourCC uint32

// The formats negotiation knows about. YU12 is V4L2's name for I420.
const (
	fourCCYUYV fourCC = 'Y' | 'U'<<8 | 'Y'<<16 | 'V'<<24
	fourCCNV12 fourCC = 'N' | 'V'<<8 | '1'<<16 | '2'<<24
	fourCCYU12 fourCC = 'Y' | 'U'<<8 | '1'<<16 | '2'<<24
	fourCCMJPG fourCC = 'M' | 'J'<<8 | 'P'<<16 | 'G'<<24
	fourCCJPEG fourCC = 'J' | 'P'<<8 | 'E'<<16 | 'G'<<24
)

func (f fourCC) String() string {
	b := []byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)}
	for _, c := range b {
		if c < ' ' || c > '~' {
			return fmt.Sprintf("0x%08x", uint32(f))
		}
	}
	return strings.TrimRight(string(b), " ")
}

// pixelFormat maps a supported fourCC to the media type, PixelFormatUnknown otherwise.
func (f fourCC) pixelFormat() media.PixelFormat {
	switch f {
	case fourCCNV12:
		return media.PixelFormatNV12
	case fourCCYU12:
		return media.PixelFormatI420
	case fourCCYUYV:
		return media.PixelFormatYUYV
	}
	return media.PixelFormatUnknown
}

// autoOrder is the preference for Format "auto", best first. The encoders take 4:2:0:
// NV12 is what hardware encoders read natively, I420 what software encoders read natively,
// and YUYV costs a conversion and twice the USB bandwidth of 4:2:0 per pixel. Preference
// only breaks ties: a later format that fits the wanted size or rate better wins.
func autoOrder() []fourCC { return []fourCC{fourCCNV12, fourCCYU12, fourCCYUYV} }

// parseFormat reads Config.Format; auto is true for "auto" or "".
func parseFormat(s string) (f fourCC, auto bool, err error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return 0, true, nil
	case "yuyv":
		return fourCCYUYV, false, nil
	case "nv12":
		return fourCCNV12, false, nil
	case "i420", "yu12":
		return fourCCYU12, false, nil
	}
	return 0, false, fmt.Errorf(`%w: format %q: want "auto", "yuyv", "nv12" or "i420"`, ErrInvalidConfig, s)
}

// checkConfig rejects a config negotiation cannot work with, before any device is touched.
func checkConfig(cfg Config) error {
	if _, _, err := parseFormat(cfg.Format); err != nil {
		return err
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.FPS <= 0 || cfg.Width > maxDim || cfg.Height > maxDim {
		return fmt.Errorf("%w: wanted %dx%d at %d fps: size and rate must be positive, sizes at most 65536",
			ErrInvalidConfig, cfg.Width, cfg.Height, cfg.FPS)
	}
	return nil
}

// sizeRange is one VIDIOC_ENUM_FRAMESIZES answer. A discrete size has min == max and step 0;
// a stepwise one offers min + k*step up to max on each axis; a continuous one has step 1.
type sizeRange struct {
	minW, maxW, stepW int
	minH, maxH, stepH int
}

func discreteSize(w, h int) sizeRange { return sizeRange{minW: w, maxW: w, minH: h, maxH: h} }

func (s sizeRange) String() string {
	if s.minW == s.maxW && s.minH == s.maxH {
		return fmt.Sprintf("%dx%d", s.minW, s.minH)
	}
	return fmt.Sprintf("[%d-%d/%d]x[%d-%d/%d]", s.minW, s.maxW, s.stepW, s.minH, s.maxH, s.stepH)
}

func (s sizeRange) width() axis  { return newAxis(s.minW, s.maxW, s.stepW) }
func (s sizeRange) height() axis { return newAxis(s.minH, s.maxH, s.stepH) }

// axis is one dimension of a sizeRange: the values min, min+step, ... up to max.
type axis struct{ min, max, step int }

func newAxis(lo, hi, step int) axis {
	if step <= 0 {
		step = 1 // discrete (lo == hi) or a driver that left the step out
	}
	return axis{lo, hi, step}
}

// maxDim bounds sizes taken from a driver, so that areas and strides cannot overflow.
const maxDim = 1 << 16

func (a axis) valid() bool    { return a.min > 0 && a.max >= a.min && a.max <= maxDim }
func (a axis) has(v int) bool { return v >= a.min && v <= a.max && (v-a.min)%a.step == 0 }
func (a axis) largest() int   { return a.min + (a.max-a.min)/a.step*a.step }
func (a axis) ceil(v int) (int, bool) {
	if v <= a.min {
		return a.min, true
	}
	r := a.min + (v-a.min+a.step-1)/a.step*a.step
	return r, r <= a.max
}

// fract is a V4L2 frame interval: num/den seconds per frame.
type fract struct{ num, den uint32 }

func (f fract) seconds() float64 {
	if f.den == 0 {
		return 0
	}
	return float64(f.num) / float64(f.den)
}

// rateRange is one VIDIOC_ENUM_FRAMEINTERVALS answer, as intervals (so min is the fastest).
// A discrete rate has min == max and a zero step.
type rateRange struct{ min, max, step fract }

func discreteRate(num, den uint32) rateRange {
	return rateRange{min: fract{num, den}, max: fract{num, den}}
}

func (r rateRange) String() string {
	if r.min == r.max {
		return fmtFPS(1 / r.min.seconds())
	}
	return fmt.Sprintf("[%s-%s]", fmtFPS(1/r.max.seconds()), fmtFPS(1/r.min.seconds()))
}

// offer is what a device can capture.
type offer struct {
	formats []formatOffer // in the order the device listed them
	// rates lists the frame intervals for one format and size; nil or empty when the device
	// lists none. A function because stepwise sizes have too many sizes to list up front.
	rates func(f fourCC, width, height int) []rateRange
}

type formatOffer struct {
	fourcc fourCC
	sizes  []sizeRange
}

func (o offer) find(f fourCC) (formatOffer, bool) {
	for _, fo := range o.formats {
		if fo.fourcc == f {
			return fo, true
		}
	}
	return formatOffer{}, false
}

// names lists the offered formats for messages, e.g. "YUYV, MJPG".
func (o offer) names() string {
	if len(o.formats) == 0 {
		return "none"
	}
	s := make([]string, len(o.formats))
	for i, fo := range o.formats {
		s[i] = fo.fourcc.String()
	}
	return strings.Join(s, ", ")
}

// String describes the whole offer for a debug log.
func (o offer) String() string {
	var b strings.Builder
	for i, fo := range o.formats {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fo.fourcc.String())
		b.WriteString(":")
		for _, s := range fo.sizes {
			b.WriteString(" ")
			b.WriteString(s.String())
		}
	}
	return b.String()
}

// choice is the negotiated mode.
type choice struct {
	fourcc        fourCC
	width, height int
	fps           float64 // to request; the wanted rate when the device lists none
	reason        string  // why, for the log
}

type sizeFit int

const (
	sizeExact  sizeFit = iota
	sizeCovers         // smallest offered size at least as large as wanted on both axes
	sizeShort          // nothing covers: the largest offered
)

type rateFit int

const (
	rateExact   rateFit = iota
	rateBelow           // closest below wanted
	rateAbove           // nothing at or below wanted: the slowest offered
	rateUnknown         // the device lists no intervals
)

type sizePick struct {
	w, h   int
	fit    sizeFit
	cost   int64 // within fit, lower is better
	reason string
}

type ratePick struct {
	fps    float64
	fit    rateFit
	cost   float64
	reason string
}

// pickSize chooses the offered size closest to w x h: exact, else the smallest (by area) that
// covers it, else the largest. ok is false when no size range is usable.
func pickSize(sizes []sizeRange, w, h int) (p sizePick, ok bool) {
	want := fmt.Sprintf("%dx%d", w, h)
	for _, s := range sizes {
		aw, ah := s.width(), s.height()
		if aw.valid() && ah.valid() && aw.has(w) && ah.has(h) {
			return sizePick{w: w, h: h, fit: sizeExact, reason: "size exact"}, true
		}
	}
	wantArea := int64(w) * int64(h)
	var cover, large *sizePick
	for _, s := range sizes {
		aw, ah := s.width(), s.height()
		if !aw.valid() || !ah.valid() {
			continue
		}
		cw, okW := aw.ceil(w)
		ch, okH := ah.ceil(h)
		if okW && okH {
			c := sizePick{w: cw, h: ch, fit: sizeCovers, cost: int64(cw)*int64(ch) - wantArea}
			if cover == nil || c.cost < cover.cost || (c.cost == cover.cost && c.w < cover.w) {
				cover = &c
			}
		}
		lw, lh := aw.largest(), ah.largest()
		l := sizePick{w: lw, h: lh, fit: sizeShort, cost: -int64(lw) * int64(lh)}
		if large == nil || l.cost < large.cost || (l.cost == large.cost && l.w > large.w) {
			large = &l
		}
	}
	switch {
	case cover != nil:
		cover.reason = fmt.Sprintf("%s not offered; %dx%d is the smallest size covering it", want, cover.w, cover.h)
		return *cover, true
	case large != nil:
		large.reason = fmt.Sprintf("nothing offered covers %s; %dx%d is the largest", want, large.w, large.h)
		return *large, true
	}
	return sizePick{}, false
}

// pickRate chooses the offered rate closest to want without going above it, else the
// slowest above it. Stepwise intervals are snapped to their step.
func pickRate(rates []rateRange, want int) ratePick {
	wantF := float64(want)
	var cands []float64
	for _, r := range rates {
		lo, hi := r.min.seconds(), r.max.seconds() // interval bounds: lo is the fastest
		if lo <= 0 || hi < lo {
			continue
		}
		t := 1 / wantF
		switch step := r.step.seconds(); {
		case lo == hi || t <= lo:
			cands = append(cands, 1/lo)
		case t >= hi:
			cands = append(cands, 1/hi)
		case step <= 0: // continuous
			cands = append(cands, wantF)
		default:
			// The first interval on the grid at least t long: the fastest rate not above want.
			k := math.Ceil((t-lo)/step - 1e-9)
			cands = append(cands, 1/min(lo+k*step, hi))
		}
	}
	if len(cands) == 0 {
		return ratePick{fps: wantF, fit: rateUnknown,
			reason: fmt.Sprintf("device lists no frame intervals; requesting %d fps", want)}
	}
	var below, above float64
	for _, c := range cands {
		if math.Abs(c-wantF) <= 1e-6*wantF {
			return ratePick{fps: wantF, fit: rateExact, reason: "fps exact"}
		}
		if c < wantF && c > below {
			below = c
		}
		if c > wantF && (above == 0 || c < above) {
			above = c
		}
	}
	if below > 0 {
		return ratePick{fps: below, fit: rateBelow, cost: wantF - below,
			reason: fmt.Sprintf("%d fps not offered; %s is the closest below", want, fmtFPS(below))}
	}
	return ratePick{fps: above, fit: rateAbove, cost: above - wantF,
		reason: fmt.Sprintf("nothing at or below %d fps; %s is the slowest offered", want, fmtFPS(above))}
}

// fmtFPS prints 30 as "30" and 30000/1001 as "29.97".
func fmtFPS(f float64) string {
	if math.Abs(f-math.Round(f)) < 1e-6 {
		return strconv.Itoa(int(math.Round(f)))
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// candidate is one format's best mode, compared across formats when Format is "auto".
type candidate struct {
	fourcc fourCC
	size   sizePick
	rate   ratePick
}

// better orders candidates: size fit first (a picture of the wanted size matters more than
// its rate), then rate fit.
func (a candidate) better(b candidate) bool {
	if a.size.fit != b.size.fit {
		return a.size.fit < b.size.fit
	}
	if a.size.cost != b.size.cost {
		return a.size.cost < b.size.cost
	}
	if a.rate.fit != b.rate.fit {
		return a.rate.fit < b.rate.fit
	}
	return a.rate.cost < b.rate.cost
}

func (a candidate) String() string {
	return fmt.Sprintf("%s %dx%d@%s", a.fourcc, a.size.w, a.size.h, fmtFPS(a.rate.fps))
}

// negotiate chooses format, size and rate from o for cfg, and says why.
func negotiate(o offer, cfg Config) (choice, error) {
	if err := checkConfig(cfg); err != nil {
		return choice{}, err
	}
	want, auto, _ := parseFormat(cfg.Format)

	var formats []fourCC
	if auto {
		for _, f := range autoOrder() {
			if _, ok := o.find(f); ok {
				formats = append(formats, f)
			}
		}
		if len(formats) == 0 {
			return choice{}, noSupportedFormat(o)
		}
	} else {
		if _, ok := o.find(want); !ok {
			return choice{}, fmt.Errorf("%w: %s (%s) wanted; formats offered: %s",
				ErrFormatNotOffered, strings.ToLower(strings.TrimSpace(cfg.Format)), want, o.names())
		}
		formats = []fourCC{want}
	}

	var cands []candidate
	best := -1
	for _, f := range formats {
		fo, _ := o.find(f)
		sp, ok := pickSize(fo.sizes, cfg.Width, cfg.Height)
		if !ok {
			continue // the device listed the format but no usable size for it
		}
		var rates []rateRange
		if o.rates != nil {
			rates = o.rates(f, sp.w, sp.h)
		}
		c := candidate{fourcc: f, size: sp, rate: pickRate(rates, cfg.FPS)}
		cands = append(cands, c)
		// Strictly better only: on a tie the earlier, preferred format stays.
		if best < 0 || c.better(cands[best]) {
			best = len(cands) - 1
		}
	}
	if best < 0 {
		names := make([]string, len(formats))
		for i, f := range formats {
			names[i] = f.String()
		}
		return choice{}, fmt.Errorf("%w: the device lists no frame sizes for %s",
			ErrNoSupportedFormat, strings.Join(names, ", "))
	}
	c := cands[best]

	var why []string
	if c.size.fit == sizeExact && c.rate.fit == rateExact {
		why = append(why, "exact match")
	} else {
		why = append(why, c.size.reason, c.rate.reason)
	}
	if auto {
		why = append(why, autoReason(cands, best))
	}
	return choice{
		fourcc: c.fourcc, width: c.size.w, height: c.size.h, fps: c.rate.fps,
		reason: strings.Join(why, "; "),
	}, nil
}

// autoReason says why "auto" took cands[best] over the other supported formats.
func autoReason(cands []candidate, best int) string {
	c := cands[best]
	if len(cands) == 1 {
		return fmt.Sprintf("auto: %s is the only supported format offered", c.fourcc)
	}
	if best == 0 {
		var others []string
		for _, o := range cands[1:] {
			others = append(others, o.String())
		}
		return fmt.Sprintf("auto: %s preferred over %s (order NV12, YU12 (I420), YUYV)", c.fourcc, strings.Join(others, ", "))
	}
	// Only the more preferred formats need explaining.
	var passed []string
	for _, o := range cands[:best] {
		passed = append(passed, o.String())
	}
	return fmt.Sprintf("auto: %s fits better than %s", c.fourcc, strings.Join(passed, ", "))
}

// noSupportedFormat explains a device with nothing this package can deliver.
func noSupportedFormat(o offer) error {
	_, mjpg := o.find(fourCCMJPG)
	_, jpeg := o.find(fourCCJPEG)
	if mjpg || jpeg {
		return &multiError{
			msg:  fmt.Sprintf("%s; formats offered: %s", ErrMJPEGNotSupported, o.names()),
			errs: []error{ErrMJPEGNotSupported, ErrNoSupportedFormat},
		}
	}
	return fmt.Errorf("%w: formats offered: %s; supported: NV12, YU12 (I420), YUYV", ErrNoSupportedFormat, o.names())
}
