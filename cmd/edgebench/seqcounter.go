package main

// lossWindow is how far back, in packets, a late packet can still fill a hole: about 20 s of
// a 2 Mbit/s stream, far beyond any NACK round trip.
const lossWindow = 4096

// seqCounter counts one RTP stream's packets by sequence number, the way RFC 3550 appendix A.3
// defines loss: expected (highest extended sequence number - first + 1) minus the distinct
// packets received. A packet that arrives after a later one (reordered, or a NACK
// retransmission) fills its hole and is counted as recovered; a second copy of a packet is a
// duplicate and counted once; 16-bit wrap-around is followed with extended sequence numbers.
// It keeps a bitmap of the last lossWindow numbers and allocates nothing per packet.
type seqCounter struct {
	started   bool
	base      uint64 // lowest extended sequence number received
	highest   uint64
	seen      [lossWindow / 64]uint64 // bit ext%lossWindow: received, for ext in (highest-lossWindow, highest]
	received  uint64                  // distinct packets in [base, highest]
	dups      uint64                  // copies of packets already counted
	recovered uint64                  // packets that filled a hole (reordering or retransmission)
	late      uint64                  // too old to tell whether they were lost: ignored
}

// seqStats is a snapshot of a seqCounter; subtract two to get a window's figures.
type seqStats struct {
	Expected   uint64 `json:"expected"`
	Received   uint64 `json:"received"`
	Duplicates uint64 `json:"duplicates"`
	Recovered  uint64 `json:"recovered"`
	Late       uint64 `json:"late"`
}

// Lost is how many packets never arrived (within the window that could repair them).
func (s seqStats) Lost() uint64 {
	if s.Received >= s.Expected {
		return 0
	}
	return s.Expected - s.Received
}

func (s seqStats) sub(o seqStats) seqStats {
	return seqStats{s.Expected - o.Expected, s.Received - o.Received, s.Duplicates - o.Duplicates,
		s.Recovered - o.Recovered, s.Late - o.Late}
}

func (c *seqCounter) bit(ext uint64) (word *uint64, mask uint64) {
	i := ext % lossWindow
	return &c.seen[i/64], 1 << (i % 64)
}

// push records one packet's sequence number.
func (c *seqCounter) push(seq uint16) {
	if !c.started {
		// Start high so that packets from before the first one still get an extended number.
		ext := uint64(1)<<32 | uint64(seq)
		c.started, c.base, c.highest, c.received = true, ext, ext, 1
		w, m := c.bit(ext)
		*w |= m
		return
	}
	ext := uint64(int64(c.highest) + int64(int16(seq-uint16(c.highest))))
	switch {
	case ext > c.highest:
		if ext-c.highest >= lossWindow {
			c.seen = [lossWindow / 64]uint64{}
		} else {
			for e := c.highest + 1; e < ext; e++ {
				w, m := c.bit(e)
				*w &^= m
			}
		}
		c.highest = ext
		w, m := c.bit(ext)
		*w |= m
		c.received++
	case c.highest-ext >= lossWindow:
		c.late++
	case ext < c.base:
		// Sent before the first packet we saw but arrived after it: the stream starts earlier.
		// The bits between ext and base were never set (they alias numbers above highest).
		c.base = ext
		w, m := c.bit(ext)
		*w |= m
		c.received++
		c.recovered++
	default:
		w, m := c.bit(ext)
		if *w&m != 0 {
			c.dups++
			return
		}
		*w |= m
		c.received++
		c.recovered++
	}
}

func (c *seqCounter) stats() seqStats {
	if !c.started {
		return seqStats{}
	}
	return seqStats{Expected: c.highest - c.base + 1, Received: c.received, Duplicates: c.dups,
		Recovered: c.recovered, Late: c.late}
}
