//go:build cgo

// Package openh264 is the software H.264 encoder: Cisco's openh264, statically linked through
// pion/mediadevices, so a fresh machine needs only Go and gcc. Boards without a hardware encoder
// (and x86 hosts) stream with it.
package openh264

import (
	"fmt"
	"image"

	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/openh264"
	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"

	"github.com/edgeflux/edge/encoder"
	"github.com/edgeflux/edge/encoder/yuv"
	"github.com/edgeflux/edge/internal/h264"
	"github.com/edgeflux/edge/internal/media"
)

// Encoder wraps one openh264 instance.
type Encoder struct {
	cfg  encoder.Config
	enc  codec.ReadCloser
	ctrl interface {
		codec.KeyFrameController
		codec.BitRateController
	}
	// next is the picture the encoder pulls on its next Read: mediadevices encoders pull from
	// a reader, and we push, so Encode parks the frame here for the duration of one Read.
	next     image.YCbCr
	scratch  yuv.I420
	sps, pps []byte
	closed   bool
}

var _ encoder.Encoder = (*Encoder)(nil)

// New opens an encoder producing constrained-baseline H.264 without B-frames.
func New(cfg encoder.Config) (encoder.Encoder, error) {
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.FPS <= 0 || cfg.BitrateBps <= 0 {
		return nil, fmt.Errorf("openh264: invalid config %+v", cfg)
	}
	params, err := openh264.NewParams()
	if err != nil {
		return nil, fmt.Errorf("openh264 params: %w", err)
	}
	params.BitRate = cfg.BitrateBps
	params.IntraPeriod = uint(max(1, int(cfg.KeyframeInterval.Seconds()*float64(cfg.FPS))))
	// Frame skipping stays off: mediadevices hands openh264 no timestamps, and with skipping
	// on its rate control then drops most frames. Without it rate control works through QP
	// alone (measured on noisy 640x480: 3.2 Mbit/s for 3 Mbit/s, 0.8 for 0.5, no frame lost).
	params.EnableFrameSkip = false
	params.UsageType = openh264.CameraVideoRealTime // baseline profile: no B-frames, no CABAC

	e := &Encoder{cfg: cfg}
	reader := video.ReaderFunc(func() (image.Image, func(), error) {
		return &e.next, func() {}, nil
	})
	enc, err := params.BuildVideoEncoder(reader, prop.Media{Video: prop.Video{
		Width: cfg.Width, Height: cfg.Height, FrameRate: float32(cfg.FPS), FrameFormat: frame.FormatI420,
	}})
	if err != nil {
		return nil, fmt.Errorf("openh264 open %dx%d: %w", cfg.Width, cfg.Height, err)
	}
	ctrl, ok := enc.Controller().(interface {
		codec.KeyFrameController
		codec.BitRateController
	})
	if !ok {
		enc.Close()
		return nil, fmt.Errorf("openh264: encoder lacks keyframe or bitrate control")
	}
	e.enc, e.ctrl = enc, ctrl
	return e, nil
}

// Name implements encoder.Encoder.
// Name is the backend's name in logs and the status page.
const Name = "openh264 (software)"

func (e *Encoder) Name() string { return Name }

// Encode implements encoder.Encoder.
func (e *Encoder) Encode(f *media.Frame) (media.AccessUnit, error) {
	if f.Width != e.cfg.Width || f.Height != e.cfg.Height {
		return media.AccessUnit{}, fmt.Errorf("openh264 encode: frame is %dx%d, encoder opened for %dx%d",
			f.Width, f.Height, e.cfg.Width, e.cfg.Height)
	}
	if err := e.stage(f); err != nil {
		return media.AccessUnit{}, err
	}
	data, release, err := e.enc.Read()
	if err != nil {
		return media.AccessUnit{}, fmt.Errorf("openh264 encode frame %d: %w", f.Seq, err)
	}
	release()
	au := media.AccessUnit{Data: data, FrameSeq: f.Seq, CaptureTime: f.CaptureTime}
	if len(data) == 0 {
		return au, nil
	}
	au.Keyframe = h264.IsKeyframe(data)
	if au.Keyframe {
		au.Data = e.guardParameterSets(data)
	}
	return au, nil
}

// stage points the encoder's input at f's planes when f is I420 (no copy) and converts into a
// reused buffer otherwise.
func (e *Encoder) stage(f *media.Frame) error {
	e.next.SubsampleRatio = image.YCbCrSubsampleRatio420
	e.next.Rect = image.Rect(0, 0, f.Width, f.Height)
	if f.Format == media.PixelFormatI420 && f.Strides[1] == f.Strides[2] {
		e.next.Y, e.next.Cb, e.next.Cr = f.Planes[0], f.Planes[1], f.Planes[2]
		e.next.YStride, e.next.CStride = f.Strides[0], f.Strides[1]
		return nil
	}
	if err := yuv.Convert(&e.scratch, f); err != nil {
		return fmt.Errorf("openh264 encode: %w", err)
	}
	e.next.Y, e.next.Cb, e.next.Cr = e.scratch.Y, e.scratch.U, e.scratch.V
	e.next.YStride, e.next.CStride = e.scratch.Width, e.scratch.Width/2
	return nil
}

// guardParameterSets remembers the latest SPS/PPS and puts them in front of an IDR that lacks
// them: a browser decodes nothing until it has seen both in-band.
func (e *Encoder) guardParameterSets(au []byte) []byte {
	for _, nal := range h264.SplitAnnexB(au) {
		switch h264.Type(nal) {
		case h264.NALSPS:
			e.sps = append(e.sps[:0], nal...)
		case h264.NALPPS:
			e.pps = append(e.pps[:0], nal...)
		}
	}
	if e.sps == nil || e.pps == nil {
		return au
	}
	return h264.EnsureParameterSets(au, e.sps, e.pps)
}

// RequestKeyframe implements encoder.Encoder.
func (e *Encoder) RequestKeyframe() { _ = e.ctrl.ForceKeyFrame() }

// SetBitrate implements encoder.Encoder.
func (e *Encoder) SetBitrate(bps int) error {
	if bps <= 0 {
		return fmt.Errorf("openh264 set bitrate %d: must be positive", bps)
	}
	return e.ctrl.SetBitRate(bps)
}

// Close implements encoder.Encoder; it is idempotent.
func (e *Encoder) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	err := e.enc.Close()
	releaseMemory()
	return err
}
