// Package probe finds the machine's V4L2 video devices (cameras and memory-to-memory
// encoders) and chooses the encoder the appliance streams with: a hardware H.264 encoder
// that takes the camera's frames (directly, or as I420 after a conversion), else the
// software encoder, with the reason either way. Discover talks to the kernel (Linux only,
// pure Go, no cgo); Choose and WriteTable are pure logic over device descriptions, so they
// are tested on any host with fake devices.
package probe

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/edgeflux/edge/internal/media"
	"github.com/edgeflux/edge/internal/v4l2"
)

// FourCC is a V4L2 pixel format code.
type FourCC = v4l2.FourCC

// Codes Choose looks for.
const (
	FourCCH264   = v4l2.FourCCH264
	FourCCYUV420 = v4l2.FourCCYUV420 // I420
	FourCCNV12   = v4l2.FourCCNV12
	FourCCYUYV   = v4l2.FourCCYUYV
	FourCCMJPEG  = v4l2.FourCCMJPEG
)

// Kind is what a video node is.
type Kind int

// Kinds of nodes.
const (
	KindOther     Kind = iota // output-only, metadata, a node that failed to answer
	KindCamera                // captures frames
	KindEncoder               // memory-to-memory, raw in, compressed out
	KindDecoder               // memory-to-memory, compressed in, raw out
	KindConverter             // memory-to-memory, raw in and out (scaler, colour converter)
)

func (k Kind) String() string {
	switch k {
	case KindCamera:
		return "camera"
	case KindEncoder:
		return "encoder"
	case KindDecoder:
		return "decoder"
	case KindConverter:
		return "converter"
	}
	return "other"
}

// Size is a frame size range from VIDIOC_ENUM_FRAMESIZES; a discrete size has Min == Max.
type Size struct {
	MinWidth, MaxWidth, StepWidth    int
	MinHeight, MaxHeight, StepHeight int
}

// Fits reports whether w x h lies in the range (steps are not checked: drivers align the
// buffer and crop, see encoder/v4l2m2m).
func (s Size) Fits(w, h int) bool {
	return w >= s.MinWidth && w <= s.MaxWidth && h >= s.MinHeight && h <= s.MaxHeight
}

func (s Size) String() string {
	if s.MinWidth == s.MaxWidth && s.MinHeight == s.MaxHeight {
		return fmt.Sprintf("%dx%d", s.MaxWidth, s.MaxHeight)
	}
	return fmt.Sprintf("%dx%d..%dx%d", s.MinWidth, s.MinHeight, s.MaxWidth, s.MaxHeight)
}

// Format is one pixel format a queue offers.
type Format struct {
	FourCC      FourCC
	Description string
	Compressed  bool
	Sizes       []Size // empty: the driver does not enumerate sizes
}

// fits reports whether the format takes w x h; a format without sizes is assumed to.
func (f Format) fits(w, h int) bool {
	if len(f.Sizes) == 0 {
		return true
	}
	return slices.ContainsFunc(f.Sizes, func(s Size) bool { return s.Fits(w, h) })
}

// sizeRange summarises the sizes of a format, e.g. "320x180..3840x2160".
func (f Format) sizeRange() string {
	if len(f.Sizes) == 0 {
		return "any size"
	}
	lo, hi := f.Sizes[0], f.Sizes[0]
	for _, s := range f.Sizes {
		if s.MinWidth*s.MinHeight < lo.MinWidth*lo.MinHeight {
			lo = s
		}
		if s.MaxWidth*s.MaxHeight > hi.MaxWidth*hi.MaxHeight {
			hi = s
		}
	}
	if lo.MinWidth == hi.MaxWidth && lo.MinHeight == hi.MaxHeight {
		return fmt.Sprintf("%dx%d", hi.MaxWidth, hi.MaxHeight)
	}
	return fmt.Sprintf("%dx%d..%dx%d", lo.MinWidth, lo.MinHeight, hi.MaxWidth, hi.MaxHeight)
}

// Device describes one video node.
type Device struct {
	Path    string
	Driver  string
	Card    string
	BusInfo string
	Kind    Kind
	MPlane  bool // multi-planar API
	// Capture lists the CAPTURE queue's formats: a camera's pixel formats, an encoder's
	// coded formats.
	Capture []Format
	// Output lists an encoder's raw OUTPUT formats for the coded format OutputFor (H.264
	// when the encoder has it: dev-encoder.rst enumerates OUTPUT for the CAPTURE format set).
	Output    []Format
	OutputFor FourCC
	// Err says what could not be asked, when something could not.
	Err string
}

func (d Device) captures(f FourCC) (Format, bool) {
	i := slices.IndexFunc(d.Capture, func(x Format) bool { return x.FourCC == f })
	if i < 0 {
		return Format{}, false
	}
	return d.Capture[i], true
}

func (d Device) outputs(f FourCC) (Format, bool) {
	i := slices.IndexFunc(d.Output, func(x Format) bool { return x.FourCC == f })
	if i < 0 {
		return Format{}, false
	}
	return d.Output[i], true
}

func (d Device) name() string {
	if d.Card == "" {
		return d.Path
	}
	return fmt.Sprintf("%s (%s)", d.Path, d.Card)
}

func fourccs(fs []Format) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.FourCC.String())
	}
	return strings.Join(s, " ")
}

// Split sorts devices into cameras and encoders, keeping their order.
func Split(devices []Device) (cameras, encoders []Device) {
	for _, d := range devices {
		switch d.Kind {
		case KindCamera:
			cameras = append(cameras, d)
		case KindEncoder:
			encoders = append(encoders, d)
		}
	}
	return cameras, encoders
}

// Backend names what streams.
type Backend string

// Backends.
const (
	BackendHardware Backend = "v4l2m2m"  // encoder/v4l2m2m on Choice.Device
	BackendSoftware Backend = "software" // encoder/openh264
	// BackendNone means the configuration forced a hardware encoder this machine does not
	// have: the daemon should stop with the reason rather than quietly stream in software.
	BackendNone Backend = ""
)

// Choice is what Choose decided, with what it decided for.
type Choice struct {
	Backend Backend
	Device  string // the encoder node, for BackendHardware
	Card    string
	MPlane  bool
	// InputFormat is the layout the encoder's OUTPUT queue takes: the camera's, or I420
	// when Convert says frames are converted first (one CPU pass, no zero copy).
	InputFormat media.PixelFormat
	Convert     bool
	Reason      string // the same as Choose's reason
	// The camera Choose chose for.
	CameraFormat  media.PixelFormat
	Width, Height int
}

// Force values for Choose (the daemon's encoder.backend setting).
const (
	ForceAuto     = "auto"     // hardware when one fits, else software ("" too)
	ForceSoftware = "software" // always software
	ForceHardware = "v4l2m2m"  // a hardware encoder or nothing ("hardware" too)
	// Any other value starting with "/dev/" names the hardware encoder node to use.
)

// verdict says whether encoder d can stream H.264 from the camera, and how.
type verdict struct {
	ok      bool
	direct  bool // takes the camera's layout: no conversion, DMABUF import possible
	input   FourCC
	explain string
}

func evaluate(d Device, cam media.PixelFormat, w, h int) verdict {
	coded, ok := d.captures(FourCCH264)
	if !ok {
		if len(d.Capture) == 0 {
			return verdict{explain: "lists no coded format" + errSuffix(d)}
		}
		return verdict{explain: "produces " + fourccs(d.Capture) + ", not H.264"}
	}
	if !coded.fits(w, h) {
		return verdict{explain: fmt.Sprintf("H.264 at %s, not %dx%d", coded.sizeRange(), w, h)}
	}
	if d.OutputFor != FourCCH264 || len(d.Output) == 0 {
		return verdict{explain: "lists no raw format for H.264" + errSuffix(d)}
	}
	want := v4l2.FromPixelFormat(cam)
	if f, ok := d.outputs(want); ok && want != 0 {
		if !f.fits(w, h) {
			return verdict{explain: fmt.Sprintf("takes %v at %s, not %dx%d", want, f.sizeRange(), w, h)}
		}
		return verdict{ok: true, direct: true, input: want,
			explain: fmt.Sprintf("encodes H.264 from the camera's %v as is", cam)}
	}
	if f, ok := d.outputs(FourCCYUV420); ok && want != 0 {
		if !f.fits(w, h) {
			return verdict{explain: fmt.Sprintf("takes I420 at %s, not %dx%d", f.sizeRange(), w, h)}
		}
		return verdict{ok: true, input: FourCCYUV420,
			explain: fmt.Sprintf("encodes H.264 from I420, converted from the camera's %v (one CPU pass per frame)", cam)}
	}
	if want == 0 {
		return verdict{explain: fmt.Sprintf("the camera's %v is not a layout the appliance feeds an encoder", cam)}
	}
	return verdict{explain: fmt.Sprintf("takes %s; neither the camera's %v nor I420", fourccs(d.Output), cam)}
}

func errSuffix(d Device) string {
	if d.Err == "" {
		return ""
	}
	return " (" + d.Err + ")"
}

// Choose picks the encoder for a camera delivering cameraFormat at width x height: the first
// memory-to-memory device that produces H.264 at that size and takes the camera's layout,
// else the first that takes I420 (frames are converted), else the software encoder. force
// is ForceAuto (or ""), ForceSoftware, ForceHardware (or "hardware") or a device path. The
// reason says why, naming what the rejected devices lack.
func Choose(cameraFormat media.PixelFormat, width, height int, devices []Device, force string) (Choice, string) {
	c := Choice{CameraFormat: cameraFormat, Width: width, Height: height}
	done := func(b Backend, reason string) (Choice, string) {
		c.Backend, c.Reason = b, reason
		return c, reason
	}
	switch force {
	case ForceSoftware:
		return done(BackendSoftware, "software encoder forced by configuration")
	case "", ForceAuto, ForceHardware, "hardware":
	default:
		if !strings.HasPrefix(force, "/dev/") {
			return done(BackendNone, fmt.Sprintf("unknown encoder backend %q (auto, software, v4l2m2m or a /dev/video* path)", force))
		}
	}
	hardwareRequired := force == ForceHardware || force == "hardware" || strings.HasPrefix(force, "/dev/")
	_, encoders := Split(devices)
	if strings.HasPrefix(force, "/dev/") {
		i := slices.IndexFunc(devices, func(d Device) bool { return d.Path == force })
		switch {
		case i < 0:
			return done(BackendNone, fmt.Sprintf("encoder %s forced by configuration is not there", force))
		case devices[i].Kind != KindEncoder:
			return done(BackendNone, fmt.Sprintf("%s forced by configuration is a %v, not an encoder", devices[i].name(), devices[i].Kind))
		}
		encoders = []Device{devices[i]}
	}
	if len(encoders) == 0 {
		reason := "no memory-to-memory encoder on this machine"
		if hardwareRequired {
			return done(BackendNone, "hardware encoder forced by configuration, but "+reason)
		}
		return done(BackendSoftware, reason)
	}
	var best *Device
	var bestV verdict
	var rejected []string
	anyH264 := false
	for i := range encoders {
		d := &encoders[i]
		if _, ok := d.captures(FourCCH264); ok {
			anyH264 = true
		}
		v := evaluate(*d, cameraFormat, width, height)
		if !v.ok {
			rejected = append(rejected, d.name()+": "+v.explain)
			continue
		}
		if best == nil || (v.direct && !bestV.direct) {
			best, bestV = d, v
		}
	}
	if best == nil {
		reason := fmt.Sprintf("no H.264 encoder takes %dx%d %v", width, height, cameraFormat)
		if !anyH264 {
			reason = "no memory-to-memory device produces H.264"
		}
		reason += " (" + strings.Join(rejected, "; ") + ")"
		if hardwareRequired {
			return done(BackendNone, "hardware encoder forced by configuration, but "+reason)
		}
		return done(BackendSoftware, reason)
	}
	c.Device, c.Card, c.MPlane, c.Convert = best.Path, best.Card, best.MPlane, !bestV.direct
	c.InputFormat = cameraFormat
	if c.Convert {
		c.InputFormat = media.PixelFormatI420
	}
	return done(BackendHardware, best.name()+" "+bestV.explain)
}

// WriteTable prints what was found and chosen, for `edged --probe`.
func WriteTable(w io.Writer, cameras, encoders []Device, choice Choice) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CAMERAS")
	if len(cameras) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		fmt.Fprintln(tw, "  PATH\tDRIVER\tCARD\tUSABLE FORMATS\tOTHER FORMATS")
		for _, d := range cameras {
			var usable, other []string
			for _, f := range d.Capture {
				switch f.FourCC {
				case FourCCYUYV, FourCCNV12, FourCCYUV420:
					usable = append(usable, f.FourCC.String()+" "+f.sizeRange())
				default:
					other = append(other, f.FourCC.String())
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", d.Path, d.Driver, d.Card, orNone(strings.Join(usable, ", ")), abbreviate(other, 8))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEMORY-TO-MEMORY ENCODERS")
	if len(encoders) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		fmt.Fprintf(tw, "  PATH\tDRIVER\tCARD\tAPI\tCODED\tRAW IN\tVERDICT for %dx%d %v\n", choice.Width, choice.Height, choice.CameraFormat)
		for _, d := range encoders {
			api := "single-planar"
			if d.MPlane {
				api = "multi-planar"
			}
			raw := fourccs(d.Output)
			if d.OutputFor != 0 && d.OutputFor != FourCCH264 {
				raw += " (for " + d.OutputFor.String() + ")"
			}
			v := evaluate(d, choice.CameraFormat, choice.Width, choice.Height)
			verdict := v.explain
			if v.ok {
				verdict = "usable: " + verdict
				if d.Path == choice.Device {
					verdict = "CHOSEN: " + v.explain
				}
			}
			var coded []string
			for _, f := range d.Capture {
				coded = append(coded, f.FourCC.String()+" "+f.sizeRange())
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Path, d.Driver, d.Card, api, orNone(strings.Join(coded, ", ")), orNone(abbreviateStr(raw, 60)), verdict)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var line string
	switch choice.Backend {
	case BackendHardware:
		conv := "the camera's frames as they are (DMABUF import when the camera exports them)"
		if choice.Convert {
			conv = fmt.Sprintf("frames converted from %v to I420", choice.CameraFormat)
		}
		line = fmt.Sprintf("ENCODER: hardware, %s (%s), %s", choice.Device, choice.Card, conv)
	case BackendSoftware:
		line = "ENCODER: software (openh264)"
	default:
		line = "ENCODER: none"
	}
	_, err := fmt.Fprintf(w, "\n%s\n  why: %s\n", line, choice.Reason)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func abbreviate(s []string, n int) string {
	if len(s) <= n {
		return orNone(strings.Join(s, " "))
	}
	return strings.Join(s[:n], " ") + fmt.Sprintf(" (+%d more)", len(s)-n)
}

func abbreviateStr(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := strings.LastIndexByte(s[:n], ' ')
	if cut < 0 {
		cut = n
	}
	return s[:cut] + fmt.Sprintf(" (+%d more)", len(strings.Fields(s[cut:])))
}

// FourCCRGB24 is packed RGB, the only input vim2m (the virtual board's scaler) takes.
const FourCCRGB24 = FourCC('R' | 'G'<<8 | 'B'<<16 | '3'<<24)

// rawFourCC is the V4L2 code of a pipeline pixel format, RGB24 included.
func rawFourCC(p media.PixelFormat) FourCC {
	if p == media.PixelFormatRGB24 {
		return FourCCRGB24
	}
	return v4l2.FromPixelFormat(p)
}

// Scalers lists the memory-to-memory devices that take and make raw pictures.
func Scalers(devices []Device) []Device {
	var out []Device
	for _, d := range devices {
		if d.Kind == KindConverter {
			out = append(out, d)
		}
	}
	return out
}

// ScalerChoice is the hardware scaler ChooseScaler picked for the layers.
type ScalerChoice struct {
	Device string // "" when the layers scale in software
	Card   string
	// Input is the camera's layout, which the scaler takes; Output the layout it makes for
	// the encoders (the camera's when it can, else I420, NV12 or YUYV).
	Input, Output media.PixelFormat
	Reason        string
	// The camera and layer sizes ChooseScaler chose for.
	Width, Height int
	Sizes         [][2]int
}

// scalerVerdict says whether scaler d takes the camera's frames and makes every layer size
// in a layout an encoder takes.
func scalerVerdict(d Device, cam media.PixelFormat, w, h int, sizes [][2]int) (media.PixelFormat, string, bool) {
	in := rawFourCC(cam)
	if in == 0 {
		return 0, fmt.Sprintf("the camera's %v is not a layout the appliance scales", cam), false
	}
	f, ok := d.outputs(in)
	if !ok {
		return 0, fmt.Sprintf("takes %s, not the camera's %v", orNone(fourccs(d.Output)), cam), false
	}
	if !f.fits(w, h) {
		return 0, fmt.Sprintf("takes %v at %s, not %dx%d", in, f.sizeRange(), w, h), false
	}
	for _, p := range []media.PixelFormat{cam, media.PixelFormatI420, media.PixelFormatNV12, media.PixelFormatYUYV} {
		out, ok := d.captures(rawFourCC(p))
		if !ok {
			continue
		}
		for _, s := range sizes {
			if !out.fits(s[0], s[1]) {
				return 0, fmt.Sprintf("makes %v at %s, not %dx%d", out.FourCC, out.sizeRange(), s[0], s[1]), false
			}
		}
		return p, fmt.Sprintf("scales the camera's %v to %v", cam, p), true
	}
	return 0, fmt.Sprintf("makes %s; none of the camera's %v, I420, NV12 or YUYV", orNone(fourccs(d.Capture)), cam), false
}

// ChooseScaler picks the memory-to-memory scaler for layers of the given sizes from a camera
// delivering cameraFormat at width x height: the first that takes the camera's layout at that
// size and makes every layer size. The reason says why, naming what the others lack; with no
// fitting scaler the layers scale in software (Device is "").
func ChooseScaler(cameraFormat media.PixelFormat, width, height int, sizes [][2]int, devices []Device) ScalerChoice {
	c := ScalerChoice{Input: cameraFormat, Width: width, Height: height, Sizes: sizes}
	scalers := Scalers(devices)
	if len(scalers) == 0 {
		c.Reason = "no memory-to-memory scaler on this machine"
		return c
	}
	var rejected []string
	for _, d := range scalers {
		out, why, ok := scalerVerdict(d, cameraFormat, width, height, sizes)
		if ok {
			c.Device, c.Card, c.Output = d.Path, d.Card, out
			c.Reason = d.name() + " " + why
			return c
		}
		rejected = append(rejected, d.name()+": "+why)
	}
	c.Reason = fmt.Sprintf("no scaler takes %dx%d %v and makes the layers (%s)", width, height, cameraFormat, strings.Join(rejected, "; "))
	return c
}

// WriteScalers prints the scalers found and the choice, for `edged -probe`.
func WriteScalers(w io.Writer, scalers []Device, choice ScalerChoice) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEMORY-TO-MEMORY SCALERS")
	if len(scalers) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		var sizes []string
		for _, s := range choice.Sizes {
			sizes = append(sizes, fmt.Sprintf("%dx%d", s[0], s[1]))
		}
		fmt.Fprintf(tw, "  PATH\tDRIVER\tCARD\tRAW IN\tRAW OUT\tVERDICT for %dx%d %v to %s\n", choice.Width, choice.Height, choice.Input, orNone(strings.Join(sizes, ", ")))
		for _, d := range scalers {
			_, why, ok := scalerVerdict(d, choice.Input, choice.Width, choice.Height, choice.Sizes)
			switch {
			case ok && d.Path == choice.Device:
				why = "CHOSEN: " + why
			case ok:
				why = "usable: " + why
			}
			var in, out []string
			for _, f := range d.Output {
				in = append(in, f.FourCC.String()+" "+f.sizeRange())
			}
			for _, f := range d.Capture {
				out = append(out, f.FourCC.String())
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", d.Path, d.Driver, d.Card, orNone(abbreviateStr(strings.Join(in, ", "), 60)), abbreviate(out, 8), why)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	line := "SCALER: software (encoder/scale)"
	if choice.Device != "" {
		line = fmt.Sprintf("SCALER: hardware, %s (%s), %v to %v", choice.Device, choice.Card, choice.Input, choice.Output)
	}
	if len(choice.Sizes) == 0 {
		line, choice.Reason = "SCALER: none needed", "one layer at the camera's size"
	}
	_, err := fmt.Fprintf(w, "\n%s\n  why: %s\n", line, choice.Reason)
	return err
}
