package testpattern

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoBarcode means Decode found no valid barcode: the picture is not from this source, is
// too damaged, or its checksum does not match. It is wrapped with the detail.
var ErrNoBarcode = errors.New("testpattern: no barcode")

// The barcode is preamble (8 bits), frame number (32), capture time in Unix milliseconds (48)
// and a CRC-16 over the frame number and time, most significant bit first, one bit per block.
// The preamble makes a flat picture fail before the checksum is even looked at and, together
// with the CRC, leaves a random picture a 2^-24 chance of reading as a barcode.
const (
	preamble    = 0xb4
	barcodeBits = 8 + 32 + 48 + 16
	payloadLen  = barcodeBits / 8

	lumaBlack = 16
	lumaWhite = 235
	neutral   = 128 // chroma of gray, and the luma around and between the blocks
	threshold = 128
)

// layout is where the barcode blocks sit; it depends only on the picture width so that Decode
// needs nothing but the picture.
type layout struct {
	block int // block side in pixels
	cols  int // blocks per block row, starting at x=0
	rows  int // block rows, starting at y=0
}

func barcodeLayout(width int) layout {
	// 16x16 blocks match H.264 macroblocks and survive low bitrates; smaller pictures need the
	// smaller blocks to fit the bits in a reasonable band.
	block := 8
	if width >= 640 {
		block = 16
	}
	cols := width / block
	rows := 0
	if cols > 0 {
		rows = (barcodeBits + cols - 1) / cols
	}
	return layout{block: block, cols: cols, rows: rows}
}

// bandHeight is the height of the barcode band including one neutral block row below it that
// keeps the moving content from smearing into the last block row.
func (l layout) bandHeight() int { return (l.rows + 1) * l.block }

// payload packs frame number seq (low 32 bits) and capture time t (Unix milliseconds, low 48
// bits) with preamble and checksum.
func payload(seq uint64, t time.Time) [payloadLen]byte {
	var p [payloadLen]byte
	p[0] = preamble
	s := uint32(seq)
	ms := uint64(t.UnixMilli()) & (1<<48 - 1)
	for i := range 4 {
		p[1+i] = byte(s >> (24 - 8*i))
	}
	for i := range 6 {
		p[5+i] = byte(ms >> (40 - 8*i))
	}
	c := crc16(p[1:11])
	p[11] = byte(c >> 8)
	p[12] = byte(c)
	return p
}

// crc16 is CRC-16/CCITT-FALSE, bitwise: 10 bytes per frame do not justify a table.
func crc16(b []byte) uint16 {
	c := uint16(0xffff)
	for _, v := range b {
		c ^= uint16(v) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
	}
	return c
}

// Decode reads the barcode back from an 8-bit luma plane of width x height pixels with the given
// stride, e.g. after an H.264 round trip. It returns the frame number (the low 32 bits of Seq)
// and the capture time at millisecond precision. A picture without a readable barcode gives an
// error wrapping ErrNoBarcode; any other error means the arguments do not describe a picture.
func Decode(y []byte, stride, width, height int) (seq uint64, captured time.Time, err error) {
	if width <= 0 || height <= 0 {
		return 0, time.Time{}, fmt.Errorf("testpattern: invalid picture size %dx%d", width, height)
	}
	if stride < width {
		return 0, time.Time{}, fmt.Errorf("testpattern: stride %d < width %d", stride, width)
	}
	if len(y)/stride < height { // len(y) < stride*height without overflow
		return 0, time.Time{}, fmt.Errorf("testpattern: %d bytes < stride %d x height %d", len(y), stride, height)
	}
	l := barcodeLayout(width)
	if l.cols == 0 || l.rows*l.block > height {
		return 0, time.Time{}, fmt.Errorf("%w: %dx%d is too small to hold one", ErrNoBarcode, width, height)
	}
	// Sample the central half of each block: its edges are where blur and coding artefacts are.
	inner := l.block / 2
	var p [payloadLen]byte
	for i := range barcodeBits {
		x0 := i%l.cols*l.block + l.block/4
		y0 := i/l.cols*l.block + l.block/4
		sum := 0
		for r := y0; r < y0+inner; r++ {
			for _, v := range y[r*stride+x0 : r*stride+x0+inner] {
				sum += int(v)
			}
		}
		if sum >= threshold*inner*inner {
			p[i/8] |= 0x80 >> (i % 8)
		}
	}
	if p[0] != preamble {
		return 0, time.Time{}, fmt.Errorf("%w: preamble %#02x, want %#02x", ErrNoBarcode, p[0], preamble)
	}
	if got, want := uint16(p[11])<<8|uint16(p[12]), crc16(p[1:11]); got != want {
		return 0, time.Time{}, fmt.Errorf("%w: checksum %#04x, want %#04x", ErrNoBarcode, got, want)
	}
	for _, v := range p[1:5] {
		seq = seq<<8 | uint64(v)
	}
	var ms uint64
	for _, v := range p[5:11] {
		ms = ms<<8 | uint64(v)
	}
	return seq, time.UnixMilli(int64(ms)), nil
}
