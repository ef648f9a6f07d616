//go:build linux && cgo

package v4l2m2m

/*
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/videodev2.h>

#define M2M_MAX_PLANES 4

// The thin C layer: it only fills the kernel's structs and calls ioctl. Unions (single- vs
// multi-planar formats and buffers, the control value, the event payload) are flattened
// here so Go never touches them, and the v4l2_plane array a multi-planar buffer points to
// lives on this C stack, never in Go memory.

static int m2m_ioctl(int fd, unsigned long req, void *arg) {
	int r;
	do {
		r = ioctl(fd, req, arg);
	} while (r == -1 && errno == EINTR);
	return r;
}

struct m2m_fmt {
	uint32_t type, pixelformat, width, height, field, colorspace, num_planes;
	uint32_t bytesperline[M2M_MAX_PLANES];
	uint32_t sizeimage[M2M_MAX_PLANES];
};

// m2m_fmt_ioctl runs VIDIOC_G_FMT, VIDIOC_S_FMT or VIDIOC_TRY_FMT on a flattened format.
static int m2m_fmt_ioctl(int fd, unsigned long req, struct m2m_fmt *m) {
	struct v4l2_format f;
	unsigned i;
	int r;

	memset(&f, 0, sizeof f);
	f.type = m->type;
	if (V4L2_TYPE_IS_MULTIPLANAR(m->type)) {
		struct v4l2_pix_format_mplane *p = &f.fmt.pix_mp;
		p->width = m->width;
		p->height = m->height;
		p->pixelformat = m->pixelformat;
		p->field = m->field;
		p->colorspace = m->colorspace;
		p->num_planes = m->num_planes > M2M_MAX_PLANES ? M2M_MAX_PLANES : m->num_planes;
		for (i = 0; i < p->num_planes; i++) {
			p->plane_fmt[i].bytesperline = m->bytesperline[i];
			p->plane_fmt[i].sizeimage = m->sizeimage[i];
		}
	} else {
		struct v4l2_pix_format *p = &f.fmt.pix;
		p->width = m->width;
		p->height = m->height;
		p->pixelformat = m->pixelformat;
		p->field = m->field;
		p->colorspace = m->colorspace;
		p->bytesperline = m->bytesperline[0];
		p->sizeimage = m->sizeimage[0];
	}
	r = m2m_ioctl(fd, req, &f);
	if (r < 0)
		return r;
	memset(m->bytesperline, 0, sizeof m->bytesperline);
	memset(m->sizeimage, 0, sizeof m->sizeimage);
	if (V4L2_TYPE_IS_MULTIPLANAR(m->type)) {
		struct v4l2_pix_format_mplane *p = &f.fmt.pix_mp;
		m->width = p->width;
		m->height = p->height;
		m->pixelformat = p->pixelformat;
		m->field = p->field;
		m->colorspace = p->colorspace;
		m->num_planes = p->num_planes > M2M_MAX_PLANES ? M2M_MAX_PLANES : p->num_planes;
		for (i = 0; i < m->num_planes; i++) {
			m->bytesperline[i] = p->plane_fmt[i].bytesperline;
			m->sizeimage[i] = p->plane_fmt[i].sizeimage;
		}
	} else {
		struct v4l2_pix_format *p = &f.fmt.pix;
		m->width = p->width;
		m->height = p->height;
		m->pixelformat = p->pixelformat;
		m->field = p->field;
		m->colorspace = p->colorspace;
		m->num_planes = 1;
		m->bytesperline[0] = p->bytesperline;
		m->sizeimage[0] = p->sizeimage;
	}
	return 0;
}

struct m2m_buf {
	uint32_t type, memory, index, flags, field, sequence, num_planes;
	int64_t sec, usec;
	uint32_t bytesused[M2M_MAX_PLANES];
	uint32_t length[M2M_MAX_PLANES];
	uint32_t offset[M2M_MAX_PLANES];      // MMAP: mem_offset for mmap()
	uint32_t data_offset[M2M_MAX_PLANES]; // multi-planar only
	int32_t fd[M2M_MAX_PLANES];           // DMABUF
};

// m2m_buf_ioctl runs VIDIOC_QUERYBUF, VIDIOC_QBUF or VIDIOC_DQBUF on a flattened buffer.
static int m2m_buf_ioctl(int fd, unsigned long req, struct m2m_buf *m) {
	struct v4l2_buffer b;
	struct v4l2_plane planes[VIDEO_MAX_PLANES];
	unsigned i, n;
	int mp = V4L2_TYPE_IS_MULTIPLANAR(m->type);
	int r;

	memset(&b, 0, sizeof b);
	memset(planes, 0, sizeof planes);
	b.type = m->type;
	b.memory = m->memory;
	b.index = m->index;
	b.flags = m->flags;
	b.field = m->field;
	b.timestamp.tv_sec = m->sec;
	b.timestamp.tv_usec = m->usec;
	if (mp) {
		n = m->num_planes > M2M_MAX_PLANES ? M2M_MAX_PLANES : m->num_planes;
		for (i = 0; i < n; i++) {
			planes[i].bytesused = m->bytesused[i];
			planes[i].length = m->length[i];
			planes[i].data_offset = m->data_offset[i];
			if (m->memory == V4L2_MEMORY_DMABUF)
				planes[i].m.fd = m->fd[i];
		}
		b.m.planes = planes;
		b.length = VIDEO_MAX_PLANES;
	} else {
		b.bytesused = m->bytesused[0];
		b.length = m->length[0];
		if (m->memory == V4L2_MEMORY_DMABUF)
			b.m.fd = m->fd[0];
	}
	r = m2m_ioctl(fd, req, &b);
	if (r < 0)
		return r;
	m->index = b.index;
	m->flags = b.flags;
	m->field = b.field;
	m->sequence = b.sequence;
	m->sec = b.timestamp.tv_sec;
	m->usec = b.timestamp.tv_usec;
	if (mp) {
		m->num_planes = b.length > M2M_MAX_PLANES ? M2M_MAX_PLANES : b.length;
		for (i = 0; i < m->num_planes; i++) {
			m->bytesused[i] = planes[i].bytesused;
			m->length[i] = planes[i].length;
			m->data_offset[i] = planes[i].data_offset;
			m->offset[i] = m->memory == V4L2_MEMORY_MMAP ? planes[i].m.mem_offset : 0;
		}
	} else {
		m->num_planes = 1;
		m->bytesused[0] = b.bytesused;
		m->length[0] = b.length;
		m->data_offset[0] = 0;
		m->offset[0] = m->memory == V4L2_MEMORY_MMAP ? b.m.offset : 0;
	}
	return 0;
}

static int m2m_s_ctrl(int fd, uint32_t id, int64_t value, int is64) {
	struct v4l2_ext_control c;
	struct v4l2_ext_controls cs;

	memset(&c, 0, sizeof c);
	memset(&cs, 0, sizeof cs);
	c.id = id;
	if (is64)
		c.value64 = value;
	else
		c.value = (int32_t)value;
	cs.which = V4L2_CTRL_WHICH_CUR_VAL;
	cs.count = 1;
	cs.controls = &c;
	return m2m_ioctl(fd, VIDIOC_S_EXT_CTRLS, &cs);
}

static int m2m_g_ctrl(int fd, uint32_t id, int is64, int64_t *value) {
	struct v4l2_ext_control c;
	struct v4l2_ext_controls cs;
	int r;

	memset(&c, 0, sizeof c);
	memset(&cs, 0, sizeof cs);
	c.id = id;
	cs.which = V4L2_CTRL_WHICH_CUR_VAL;
	cs.count = 1;
	cs.controls = &c;
	r = m2m_ioctl(fd, VIDIOC_G_EXT_CTRLS, &cs);
	if (r == 0)
		*value = is64 ? c.value64 : c.value;
	return r;
}

// m2m_s_parm sets the frame interval of a queue: timeperframe is OUTPUT's or CAPTURE's.
static int m2m_s_parm(int fd, uint32_t type, uint32_t *num, uint32_t *den) {
	struct v4l2_streamparm p;
	int r;

	memset(&p, 0, sizeof p);
	p.type = type;
	if (V4L2_TYPE_IS_OUTPUT(type)) {
		p.parm.output.timeperframe.numerator = *num;
		p.parm.output.timeperframe.denominator = *den;
	} else {
		p.parm.capture.timeperframe.numerator = *num;
		p.parm.capture.timeperframe.denominator = *den;
	}
	r = m2m_ioctl(fd, VIDIOC_S_PARM, &p);
	if (r < 0)
		return r;
	if (V4L2_TYPE_IS_OUTPUT(type)) {
		*num = p.parm.output.timeperframe.numerator;
		*den = p.parm.output.timeperframe.denominator;
	} else {
		*num = p.parm.capture.timeperframe.numerator;
		*den = p.parm.capture.timeperframe.denominator;
	}
	return 0;
}

static int m2m_cmd(int fd, int encoder, uint32_t cmd) {
	if (encoder) {
		struct v4l2_encoder_cmd c;
		memset(&c, 0, sizeof c);
		c.cmd = cmd;
		return m2m_ioctl(fd, VIDIOC_ENCODER_CMD, &c);
	} else {
		struct v4l2_decoder_cmd c;
		memset(&c, 0, sizeof c);
		c.cmd = cmd;
		return m2m_ioctl(fd, VIDIOC_DECODER_CMD, &c);
	}
}

static int m2m_subscribe(int fd, uint32_t type) {
	struct v4l2_event_subscription s;
	memset(&s, 0, sizeof s);
	s.type = type;
	return m2m_ioctl(fd, VIDIOC_SUBSCRIBE_EVENT, &s);
}

static int m2m_dqevent(int fd, uint32_t *type, uint32_t *changes) {
	struct v4l2_event e;
	int r;

	memset(&e, 0, sizeof e);
	r = m2m_ioctl(fd, VIDIOC_DQEVENT, &e);
	if (r < 0)
		return r;
	*type = e.type;
	*changes = e.type == V4L2_EVENT_SOURCE_CHANGE ? e.u.src_change.changes : 0;
	return 0;
}

static int m2m_reqbufs(int fd, uint32_t type, uint32_t memory, uint32_t *count) {
	struct v4l2_requestbuffers rb;
	int r;

	memset(&rb, 0, sizeof rb);
	rb.type = type;
	rb.memory = memory;
	rb.count = *count;
	r = m2m_ioctl(fd, VIDIOC_REQBUFS, &rb);
	if (r == 0)
		*count = rb.count;
	return r;
}

static int m2m_stream(int fd, int on, uint32_t type) {
	int t = type;
	return m2m_ioctl(fd, on ? VIDIOC_STREAMON : VIDIOC_STREAMOFF, &t);
}

static int m2m_expbuf(int fd, uint32_t type, uint32_t index, uint32_t plane, int *out) {
	struct v4l2_exportbuffer e;
	int r;

	memset(&e, 0, sizeof e);
	e.type = type;
	e.index = index;
	e.plane = plane;
	e.flags = O_RDWR | O_CLOEXEC;
	r = m2m_ioctl(fd, VIDIOC_EXPBUF, &e);
	if (r == 0)
		*out = e.fd;
	return r;
}

static int m2m_crop(int fd, uint32_t type, uint32_t target, struct v4l2_rect *r) {
	struct v4l2_selection s;
	int ret;

	memset(&s, 0, sizeof s);
	s.type = type;
	s.target = target;
	s.r = *r;
	ret = m2m_ioctl(fd, VIDIOC_S_SELECTION, &s);
	if (ret == 0)
		*r = s.r;
	return ret;
}

static int m2m_querycap(int fd, struct v4l2_capability *c) {
	memset(c, 0, sizeof *c);
	return m2m_ioctl(fd, VIDIOC_QUERYCAP, c);
}

static int m2m_enum_fmt(int fd, uint32_t type, uint32_t index, uint32_t *fourcc, uint32_t *flags) {
	struct v4l2_fmtdesc d;
	int r;

	memset(&d, 0, sizeof d);
	d.type = type;
	d.index = index;
	r = m2m_ioctl(fd, VIDIOC_ENUM_FMT, &d);
	if (r == 0) {
		*fourcc = d.pixelformat;
		*flags = d.flags;
	}
	return r;
}

static int m2m_queryctrl(int fd, uint32_t id, struct v4l2_queryctrl *q) {
	memset(q, 0, sizeof *q);
	q->id = id;
	return m2m_ioctl(fd, VIDIOC_QUERYCTRL, q);
}

static int m2m_querymenu(int fd, uint32_t id, uint32_t index) {
	struct v4l2_querymenu m;
	memset(&m, 0, sizeof m);
	m.id = id;
	m.index = index;
	return m2m_ioctl(fd, VIDIOC_QUERYMENU, &m);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The pure-Go constants of logic.go, checked against the kernel headers at compile time: a
// mismatch makes one of these array lengths negative.
var (
	_ [bufFlagKeyframe - C.V4L2_BUF_FLAG_KEYFRAME]struct{}
	_ [C.V4L2_BUF_FLAG_KEYFRAME - bufFlagKeyframe]struct{}
	_ [bufFlagError - C.V4L2_BUF_FLAG_ERROR]struct{}
	_ [C.V4L2_BUF_FLAG_ERROR - bufFlagError]struct{}
	_ [bufFlagLast - C.V4L2_BUF_FLAG_LAST]struct{}
	_ [C.V4L2_BUF_FLAG_LAST - bufFlagLast]struct{}
	_ [maxPlanes - C.M2M_MAX_PLANES]struct{}
	_ [C.M2M_MAX_PLANES - maxPlanes]struct{}
	_ [bitrateModeCBR - C.V4L2_MPEG_VIDEO_BITRATE_MODE_CBR]struct{}
	_ [C.V4L2_MPEG_VIDEO_BITRATE_MODE_CBR - bitrateModeCBR]struct{}
	_ [bitrateModeVBR - C.V4L2_MPEG_VIDEO_BITRATE_MODE_VBR]struct{}
	_ [C.V4L2_MPEG_VIDEO_BITRATE_MODE_VBR - bitrateModeVBR]struct{}
	_ [h264ProfileConstrainedBase - C.V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE]struct{}
	_ [C.V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE - h264ProfileConstrainedBase]struct{}
	_ [h264ProfileBaseline - C.V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE]struct{}
	_ [C.V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE - h264ProfileBaseline]struct{}
	_ [headerModeJoined - C.V4L2_MPEG_VIDEO_HEADER_MODE_JOINED_WITH_1ST_FRAME]struct{}
	_ [C.V4L2_MPEG_VIDEO_HEADER_MODE_JOINED_WITH_1ST_FRAME - headerModeJoined]struct{}
	_ [C.V4L2_MPEG_VIDEO_H264_LEVEL_3_1 - 9]struct{}
	_ [9 - C.V4L2_MPEG_VIDEO_H264_LEVEL_3_1]struct{}
	_ [C.V4L2_MPEG_VIDEO_H264_LEVEL_5_2 - 16]struct{}
	_ [16 - C.V4L2_MPEG_VIDEO_H264_LEVEL_5_2]struct{}
	_ [uint32(FourCCH264) - C.V4L2_PIX_FMT_H264]struct{}
	_ [C.V4L2_PIX_FMT_H264 - uint32(FourCCH264)]struct{}
	_ [uint32(FourCCFWHT) - C.V4L2_PIX_FMT_FWHT]struct{}
	_ [C.V4L2_PIX_FMT_FWHT - uint32(FourCCFWHT)]struct{}
	_ [uint32(FourCCYUV420) - C.V4L2_PIX_FMT_YUV420]struct{}
	_ [C.V4L2_PIX_FMT_YUV420 - uint32(FourCCYUV420)]struct{}
	_ [uint32(FourCCNV12) - C.V4L2_PIX_FMT_NV12]struct{}
	_ [C.V4L2_PIX_FMT_NV12 - uint32(FourCCNV12)]struct{}
	_ [uint32(FourCCYUYV) - C.V4L2_PIX_FMT_YUYV]struct{}
	_ [C.V4L2_PIX_FMT_YUYV - uint32(FourCCYUYV)]struct{}
	_ [uint32(FourCCRGB24) - C.V4L2_PIX_FMT_RGB24]struct{}
	_ [C.V4L2_PIX_FMT_RGB24 - uint32(FourCCRGB24)]struct{}
)

// controlID maps the backend's controls to V4L2 control IDs.
func controlID(c control) uint32 {
	switch c {
	case ctrlH264Profile:
		return C.V4L2_CID_MPEG_VIDEO_H264_PROFILE
	case ctrlH264Level:
		return C.V4L2_CID_MPEG_VIDEO_H264_LEVEL
	case ctrlBitrateMode:
		return C.V4L2_CID_MPEG_VIDEO_BITRATE_MODE
	case ctrlBitrate:
		return C.V4L2_CID_MPEG_VIDEO_BITRATE
	case ctrlGOPSize:
		return C.V4L2_CID_MPEG_VIDEO_GOP_SIZE
	case ctrlH264IPeriod:
		return C.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD
	case ctrlBFrames:
		return C.V4L2_CID_MPEG_VIDEO_B_FRAMES
	case ctrlHeaderMode:
		return C.V4L2_CID_MPEG_VIDEO_HEADER_MODE
	case ctrlRepeatSeqHeader:
		return C.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER
	case ctrlPrependSPSPPS:
		return C.V4L2_CID_MPEG_VIDEO_PREPEND_SPSPPS_TO_IDR
	case ctrlH264IQP:
		return C.V4L2_CID_MPEG_VIDEO_H264_I_FRAME_QP
	case ctrlH264PQP:
		return C.V4L2_CID_MPEG_VIDEO_H264_P_FRAME_QP
	case ctrlFWHTIQP:
		return C.V4L2_CID_FWHT_I_FRAME_QP
	case ctrlFWHTPQP:
		return C.V4L2_CID_FWHT_P_FRAME_QP
	case ctrlForceKeyFrame:
		return C.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME
	}
	return 0
}

// V4L2 values the Go side uses.
const (
	capVideoM2M       = C.V4L2_CAP_VIDEO_M2M
	capVideoM2MMplane = C.V4L2_CAP_VIDEO_M2M_MPLANE
	capVideoCapture   = C.V4L2_CAP_VIDEO_CAPTURE
	capVideoCaptureMP = C.V4L2_CAP_VIDEO_CAPTURE_MPLANE
	capStreaming      = C.V4L2_CAP_STREAMING
	capDeviceCaps     = C.V4L2_CAP_DEVICE_CAPS

	memoryMMAP   = C.V4L2_MEMORY_MMAP
	memoryDMABUF = C.V4L2_MEMORY_DMABUF

	fieldNone = C.V4L2_FIELD_NONE

	encCmdStart = C.V4L2_ENC_CMD_START
	encCmdStop  = C.V4L2_ENC_CMD_STOP
	decCmdStart = C.V4L2_DEC_CMD_START
	decCmdStop  = C.V4L2_DEC_CMD_STOP

	eventEOS          = C.V4L2_EVENT_EOS
	eventSourceChange = C.V4L2_EVENT_SOURCE_CHANGE

	ctrlTypeInteger64 = C.V4L2_CTRL_TYPE_INTEGER64
	ctrlTypeMenu      = C.V4L2_CTRL_TYPE_MENU
	ctrlTypeIntMenu   = C.V4L2_CTRL_TYPE_INTEGER_MENU
	ctrlTypeButton    = C.V4L2_CTRL_TYPE_BUTTON
	ctrlFlagDisabled  = C.V4L2_CTRL_FLAG_DISABLED
)

// Buffer types by queue and API.
func bufType(output, mplane bool) uint32 {
	switch {
	case output && mplane:
		return C.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE
	case output:
		return C.V4L2_BUF_TYPE_VIDEO_OUTPUT
	case mplane:
		return C.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE
	}
	return C.V4L2_BUF_TYPE_VIDEO_CAPTURE
}

// device is an open V4L2 node. Its methods wrap each ioctl's errno with the operation.
type device struct {
	fd     int
	path   string
	mplane bool   // the node uses the multi-planar API
	caps   uint32 // this node's capabilities
	driver string
	card   string
	bus    string
}

// openDevice opens a node non-blocking (DQBUF returns EAGAIN rather than waiting; waiting is
// poll's job, with a timeout) and reads its capabilities.
func openDevice(path string) (*device, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d := &device{fd: fd, path: path}
	var c C.struct_v4l2_capability
	if r, err := C.m2m_querycap(C.int(fd), &c); r < 0 {
		unix.Close(fd)
		return nil, d.errf("VIDIOC_QUERYCAP", err)
	}
	d.caps = uint32(c.capabilities)
	if d.caps&capDeviceCaps != 0 {
		d.caps = uint32(c.device_caps)
	}
	d.driver = C.GoString((*C.char)(unsafe.Pointer(&c.driver[0])))
	d.card = C.GoString((*C.char)(unsafe.Pointer(&c.card[0])))
	d.bus = C.GoString((*C.char)(unsafe.Pointer(&c.bus_info[0])))
	d.mplane = d.caps&(capVideoM2MMplane|capVideoCaptureMP) != 0 && d.caps&(capVideoM2M|capVideoCapture) == 0
	return d, nil
}

func (d *device) isM2M() bool { return d.caps&(capVideoM2M|capVideoM2MMplane) != 0 }

func (d *device) close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", d.path, err)
	}
	return nil
}

// errf wraps the errno of a failed ioctl; a missing errno (it cannot happen for ioctl, but
// cgo only reports a non-zero one) becomes EIO so callers always see an Errno.
func (d *device) errf(op string, err error) error {
	if err == nil {
		err = syscall.EIO
	}
	return fmt.Errorf("%s %s: %w", d.path, op, err)
}

func (d *device) outType() uint32 { return bufType(true, d.mplane) }
func (d *device) capType() uint32 { return bufType(false, d.mplane) }

func queueName(t uint32) string {
	switch t {
	case C.V4L2_BUF_TYPE_VIDEO_OUTPUT, C.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE:
		return "OUTPUT"
	}
	return "CAPTURE"
}

// enumFormats lists the pixel formats of a queue (VIDIOC_ENUM_FMT).
func (d *device) enumFormats(t uint32) ([]FourCC, error) {
	var out []FourCC
	for i := 0; i < 256; i++ {
		var fcc, flags C.uint32_t
		r, err := C.m2m_enum_fmt(C.int(d.fd), C.uint32_t(t), C.uint32_t(i), &fcc, &flags)
		if r < 0 {
			if errors.Is(err, syscall.EINVAL) {
				break
			}
			return out, d.errf("VIDIOC_ENUM_FMT "+queueName(t), err)
		}
		out = append(out, FourCC(fcc))
	}
	return out, nil
}

func toC(f format) C.struct_m2m_fmt {
	c := C.struct_m2m_fmt{
		_type: C.uint32_t(f.Type), pixelformat: C.uint32_t(f.PixelFormat),
		width: C.uint32_t(f.Width), height: C.uint32_t(f.Height), field: C.uint32_t(f.Field),
		colorspace: C.uint32_t(f.Colorspace), num_planes: C.uint32_t(f.NumPlanes),
	}
	for i := range maxPlanes {
		c.bytesperline[i] = C.uint32_t(f.BytesPerLine[i])
		c.sizeimage[i] = C.uint32_t(f.SizeImage[i])
	}
	return c
}

func fromC(c C.struct_m2m_fmt) format {
	f := format{
		Type: uint32(c._type), PixelFormat: FourCC(c.pixelformat), Width: uint32(c.width),
		Height: uint32(c.height), Field: uint32(c.field), Colorspace: uint32(c.colorspace),
		NumPlanes: uint32(c.num_planes),
	}
	for i := range maxPlanes {
		f.BytesPerLine[i] = uint32(c.bytesperline[i])
		f.SizeImage[i] = uint32(c.sizeimage[i])
	}
	return f
}

// setFormat runs VIDIOC_S_FMT and returns what the driver made of the request.
func (d *device) setFormat(f format) (format, error) {
	c := toC(f)
	if r, err := C.m2m_fmt_ioctl(C.int(d.fd), C.VIDIOC_S_FMT, &c); r < 0 {
		return format{}, d.errf(fmt.Sprintf("VIDIOC_S_FMT %s %v %dx%d", queueName(f.Type), f.PixelFormat, f.Width, f.Height), err)
	}
	return fromC(c), nil
}

func (d *device) getFormat(t uint32) (format, error) {
	c := C.struct_m2m_fmt{_type: C.uint32_t(t)}
	if r, err := C.m2m_fmt_ioctl(C.int(d.fd), C.VIDIOC_G_FMT, &c); r < 0 {
		return format{}, d.errf("VIDIOC_G_FMT "+queueName(t), err)
	}
	return fromC(c), nil
}

// setFrameInterval sets a queue's frame interval (VIDIOC_S_PARM) and returns the frame rate
// the driver took.
func (d *device) setFrameInterval(t uint32, fps int) (float64, error) {
	num, den := C.uint32_t(1), C.uint32_t(fps)
	if r, err := C.m2m_s_parm(C.int(d.fd), C.uint32_t(t), &num, &den); r < 0 {
		return 0, d.errf("VIDIOC_S_PARM "+queueName(t), err)
	}
	if num == 0 {
		return 0, nil
	}
	return float64(den) / float64(num), nil
}

// setCrop sets the OUTPUT crop rectangle (the visible picture inside an aligned buffer) and
// returns the one the driver adjusted it to.
func (d *device) setCrop(t uint32, w, h int) (int, int, error) {
	r := C.struct_v4l2_rect{width: C.__u32(w), height: C.__u32(h)}
	if ret, err := C.m2m_crop(C.int(d.fd), C.uint32_t(t), C.V4L2_SEL_TGT_CROP, &r); ret < 0 {
		return 0, 0, d.errf(fmt.Sprintf("VIDIOC_S_SELECTION CROP %dx%d", w, h), err)
	}
	return int(r.width), int(r.height), nil
}

// ctrlInfo is what VIDIOC_QUERYCTRL says about a control.
type ctrlInfo struct {
	typ           uint32
	min, max, def int64
	flags         uint32
}

// queryControl says whether the device has a control and its range; ok is false (and err
// nil) when it does not.
func (d *device) queryControl(id uint32) (ctrlInfo, bool, error) {
	var q C.struct_v4l2_queryctrl
	if r, err := C.m2m_queryctrl(C.int(d.fd), C.uint32_t(id), &q); r < 0 {
		if errors.Is(err, syscall.EINVAL) {
			return ctrlInfo{}, false, nil
		}
		return ctrlInfo{}, false, d.errf(fmt.Sprintf("VIDIOC_QUERYCTRL 0x%08x", id), err)
	}
	info := ctrlInfo{typ: uint32(q._type), min: int64(q.minimum), max: int64(q.maximum), def: int64(q.default_value), flags: uint32(q.flags)}
	if info.flags&ctrlFlagDisabled != 0 {
		return info, false, nil
	}
	return info, true, nil
}

// menuHas says whether a menu control offers an item.
func (d *device) menuHas(id uint32, index int64) bool {
	r, _ := C.m2m_querymenu(C.int(d.fd), C.uint32_t(id), C.uint32_t(index))
	return r == 0
}

func (d *device) setControl(id uint32, typ uint32, v int64) error {
	is64 := C.int(0)
	if typ == ctrlTypeInteger64 {
		is64 = 1
	}
	if r, err := C.m2m_s_ctrl(C.int(d.fd), C.uint32_t(id), C.int64_t(v), is64); r < 0 {
		return d.errf(fmt.Sprintf("VIDIOC_S_EXT_CTRLS 0x%08x=%d", id, v), err)
	}
	return nil
}

func (d *device) getControl(id uint32, typ uint32) (int64, error) {
	is64 := C.int(0)
	if typ == ctrlTypeInteger64 {
		is64 = 1
	}
	var v C.int64_t
	if r, err := C.m2m_g_ctrl(C.int(d.fd), C.uint32_t(id), is64, &v); r < 0 {
		return 0, d.errf(fmt.Sprintf("VIDIOC_G_EXT_CTRLS 0x%08x", id), err)
	}
	return int64(v), nil
}

// reqbufs runs VIDIOC_REQBUFS and returns how many buffers the driver allocated.
func (d *device) reqbufs(t, memory uint32, count int) (int, error) {
	n := C.uint32_t(count)
	if r, err := C.m2m_reqbufs(C.int(d.fd), C.uint32_t(t), C.uint32_t(memory), &n); r < 0 {
		return 0, d.errf(fmt.Sprintf("VIDIOC_REQBUFS %s count=%d", queueName(t), count), err)
	}
	return int(n), nil
}

// buffer is a v4l2_buffer flattened over the single- and multi-planar forms.
type buffer struct {
	typ, memory, index uint32
	flags, field, seq  uint32
	numPlanes          uint32
	sec, usec          int64
	bytesused          [maxPlanes]uint32
	length             [maxPlanes]uint32
	offset             [maxPlanes]uint32
	dataOffset         [maxPlanes]uint32
	fd                 [maxPlanes]int32
}

func (b *buffer) toC() C.struct_m2m_buf {
	c := C.struct_m2m_buf{
		_type: C.uint32_t(b.typ), memory: C.uint32_t(b.memory), index: C.uint32_t(b.index),
		flags: C.uint32_t(b.flags), field: C.uint32_t(b.field), num_planes: C.uint32_t(b.numPlanes),
		sec: C.int64_t(b.sec), usec: C.int64_t(b.usec),
	}
	for i := range maxPlanes {
		c.bytesused[i] = C.uint32_t(b.bytesused[i])
		c.length[i] = C.uint32_t(b.length[i])
		c.data_offset[i] = C.uint32_t(b.dataOffset[i])
		c.fd[i] = C.int32_t(b.fd[i])
	}
	return c
}

func (b *buffer) fromC(c *C.struct_m2m_buf) {
	b.index, b.flags, b.field, b.seq = uint32(c.index), uint32(c.flags), uint32(c.field), uint32(c.sequence)
	b.numPlanes = uint32(c.num_planes)
	b.sec, b.usec = int64(c.sec), int64(c.usec)
	for i := range maxPlanes {
		b.bytesused[i] = uint32(c.bytesused[i])
		b.length[i] = uint32(c.length[i])
		b.offset[i] = uint32(c.offset[i])
		b.dataOffset[i] = uint32(c.data_offset[i])
	}
}

func (d *device) bufIoctl(req C.ulong, name string, b *buffer) error {
	c := b.toC()
	if r, err := C.m2m_buf_ioctl(C.int(d.fd), req, &c); r < 0 {
		return d.errf(fmt.Sprintf("%s %s #%d", name, queueName(b.typ), b.index), err)
	}
	b.fromC(&c)
	return nil
}

func (d *device) querybuf(b *buffer) error {
	return d.bufIoctl(C.VIDIOC_QUERYBUF, "VIDIOC_QUERYBUF", b)
}
func (d *device) qbuf(b *buffer) error { return d.bufIoctl(C.VIDIOC_QBUF, "VIDIOC_QBUF", b) }

// dqbuf dequeues a done buffer; ok is false when none is ready (EAGAIN).
func (d *device) dqbuf(b *buffer) (bool, error) {
	err := d.bufIoctl(C.VIDIOC_DQBUF, "VIDIOC_DQBUF", b)
	if errors.Is(err, syscall.EAGAIN) {
		return false, nil
	}
	return err == nil, err
}

func (d *device) stream(t uint32, on bool) error {
	onC, name := C.int(0), "VIDIOC_STREAMOFF "
	if on {
		onC, name = 1, "VIDIOC_STREAMON "
	}
	if r, err := C.m2m_stream(C.int(d.fd), onC, C.uint32_t(t)); r < 0 {
		return d.errf(name+queueName(t), err)
	}
	return nil
}

// expbuf exports one plane of an MMAP buffer as a DMABUF descriptor (VIDIOC_EXPBUF).
func (d *device) expbuf(t uint32, index, plane int) (int, error) {
	var fd C.int
	if r, err := C.m2m_expbuf(C.int(d.fd), C.uint32_t(t), C.uint32_t(index), C.uint32_t(plane), &fd); r < 0 {
		return -1, d.errf(fmt.Sprintf("VIDIOC_EXPBUF %s #%d", queueName(t), index), err)
	}
	return int(fd), nil
}

func (d *device) encoderCmd(cmd uint32) error {
	if r, err := C.m2m_cmd(C.int(d.fd), 1, C.uint32_t(cmd)); r < 0 {
		return d.errf(fmt.Sprintf("VIDIOC_ENCODER_CMD %d", cmd), err)
	}
	return nil
}

func (d *device) decoderCmd(cmd uint32) error {
	if r, err := C.m2m_cmd(C.int(d.fd), 0, C.uint32_t(cmd)); r < 0 {
		return d.errf(fmt.Sprintf("VIDIOC_DECODER_CMD %d", cmd), err)
	}
	return nil
}

func (d *device) subscribe(event uint32) error {
	if r, err := C.m2m_subscribe(C.int(d.fd), C.uint32_t(event)); r < 0 {
		return d.errf(fmt.Sprintf("VIDIOC_SUBSCRIBE_EVENT %d", event), err)
	}
	return nil
}

// dqevent dequeues a pending event; ok is false when there is none.
func (d *device) dqevent() (typ, changes uint32, ok bool, err error) {
	var t, ch C.uint32_t
	if r, err := C.m2m_dqevent(C.int(d.fd), &t, &ch); r < 0 {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EAGAIN) {
			return 0, 0, false, nil
		}
		return 0, 0, false, d.errf("VIDIOC_DQEVENT", err)
	}
	return uint32(t), uint32(ch), true, nil
}

// Poll results.
const (
	pollIn  = unix.POLLIN
	pollOut = unix.POLLOUT
	pollPri = unix.POLLPRI
	pollErr = unix.POLLERR | unix.POLLHUP | unix.POLLNVAL
)

// poll waits up to timeout for the node's queues: POLLIN a CAPTURE buffer is done, POLLOUT an
// OUTPUT buffer, POLLPRI an event; POLLERR neither queue has work. It returns 0 on timeout.
func (d *device) poll(timeout time.Duration) (int16, error) {
	fds := []unix.PollFd{{Fd: int32(d.fd), Events: pollIn | pollOut | pollPri}}
	ms := int(timeout / time.Millisecond)
	if timeout > 0 && ms == 0 {
		ms = 1
	}
	for {
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll %s: %w", d.path, err)
		}
		if n == 0 {
			return 0, nil
		}
		return fds[0].Revents, nil
	}
}

// mmap maps an MMAP buffer plane.
func (d *device) mmap(offset, length uint32) ([]byte, error) {
	b, err := unix.Mmap(d.fd, int64(offset), int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s offset %d length %d: %w", d.path, offset, length, err)
	}
	return b, nil
}
