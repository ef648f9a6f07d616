package h264

import "fmt"

// bitReader reads the RBSP bits of a NAL unit payload, dropping emulation prevention bytes
// (the 0x03 in 00 00 03) as it goes so no unescaped copy is needed.
type bitReader struct {
	b     []byte
	pos   int  // next byte of b to load
	zeros int  // zero bytes loaded in a row, to spot emulation prevention
	cur   byte // byte being read
	left  int  // bits of cur not yet read
}

func (r *bitReader) bit() (uint32, error) {
	if r.left == 0 {
		if r.pos < len(r.b) && r.zeros >= 2 && r.b[r.pos] == 3 {
			r.pos++
			r.zeros = 0
		}
		if r.pos >= len(r.b) {
			return 0, ErrTruncated
		}
		r.cur = r.b[r.pos]
		r.pos++
		r.left = 8
		if r.cur == 0 {
			r.zeros++
		} else {
			r.zeros = 0
		}
	}
	r.left--
	return uint32(r.cur>>r.left) & 1, nil
}

// bits reads n <= 32 bits, most significant first.
func (r *bitReader) bits(n int) (uint32, error) {
	var v uint32
	for range n {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		v = v<<1 | b
	}
	return v, nil
}

func (r *bitReader) flag() (bool, error) {
	b, err := r.bit()
	return b == 1, err
}

// ue reads an unsigned exp-Golomb code. Codes of more than 32 bits hold values no SPS field
// allows, so they are rejected rather than overflowing.
func (r *bitReader) ue() (uint32, error) {
	zeros := 0
	for {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		if b == 1 {
			break
		}
		zeros++
		if zeros > 31 {
			return 0, fmt.Errorf("%w: exp-Golomb code longer than 32 bits", ErrInvalid)
		}
	}
	rest, err := r.bits(zeros)
	if err != nil {
		return 0, err
	}
	return uint32(uint64(1)<<zeros-1) + rest, nil
}

// se reads a signed exp-Golomb code.
func (r *bitReader) se() (int64, error) {
	k, err := r.ue()
	if err != nil {
		return 0, err
	}
	if k&1 == 1 {
		return int64(k/2) + 1, nil
	}
	return -int64(k / 2), nil
}
