// Package v4l2m2m is the hardware encoder backend: a V4L2 memory-to-memory stateful encoder
// (Raspberry Pi 4's bcm2835-codec, i.MX8MP's VC8000E, Qualcomm venus, and any other driver
// that follows the kernel's dev-encoder.rst contract), driven through cgo.
//
// The sequence is the one dev-encoder.rst prescribes: the coded format on CAPTURE first, the
// raw format on OUTPUT, the frame interval with VIDIOC_S_PARM, the crop rectangle when the
// driver aligns the buffer beyond the picture (1920x1080 in 1920x1088 buffers), the controls,
// then VIDIOC_REQBUFS and VIDIOC_STREAMON on both queues. Both the single- and multi-planar
// APIs are supported. OUTPUT buffers are either MMAP (the frame is copied in, converted to
// I420 when the device does not take the camera's layout) or imported DMABUF (Frame.DMABuf,
// no copy at all); CAPTURE buffers are MMAP. Each OUTPUT buffer carries a unique timestamp
// so the CAPTURE buffer it turns into is matched back to its frame number and capture time.
//
// The coded format is a parameter: H.264 in production, FWHT for vicodec, the kernel's
// virtual encoder that the virtual board tests run against. The ioctl sequence is identical;
// only the control table (profile, level, QP) and the bitstream checks (keyframe, H.264
// parameter-set guard) depend on it.
//
// Drain is V4L2_ENC_CMD_STOP, buffers until the one flagged V4L2_BUF_FLAG_LAST, then
// V4L2_ENC_CMD_START. A driver that keeps failing DQBUF with EPIPE after START (vicodec in
// Linux 6.1 does) is restarted with STREAMOFF/STREAMON of CAPTURE instead, which
// dev-encoder.rst also allows from the Stopped state, at the cost of a keyframe.
//
// Controls a driver lacks are logged once and skipped. Keyframes are forced with
// V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, or, without it, with the Reset sequence (STREAMOFF and
// STREAMON of CAPTURE), after which a stateful encoder starts a stream of its own. A driver
// that fails (-EIO, a vanished node, POLLERR) or wedges (nothing comes back within
// Options.Timeout) is closed and reopened on a following Encode; frames are dropped meanwhile
// and Encode never blocks longer than the timeout.
//
// The cgo surface is one file (device_linux.go): a thin C layer that fills the kernel's
// structs (flattening the single/multi-planar unions) and calls ioctl; the logic is Go. Other
// builds get a stub whose New returns an error wrapping errors.ErrUnsupported.
package v4l2m2m
