package main

import "testing"

func TestSeqCounter(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint16
		want seqStats
	}{
		{"in order", []uint16{1, 2, 3, 4}, seqStats{Expected: 4, Received: 4}},
		{"one lost", []uint16{1, 2, 4, 5}, seqStats{Expected: 5, Received: 4}},
		{"reordered is not lost", []uint16{1, 3, 2, 4}, seqStats{Expected: 4, Received: 4, Recovered: 1}},
		{"retransmission fills the hole", []uint16{10, 11, 13, 14, 15, 12}, seqStats{Expected: 6, Received: 6, Recovered: 1}},
		{"duplicate counted once", []uint16{1, 2, 2, 3, 1}, seqStats{Expected: 3, Received: 3, Duplicates: 2}},
		{"wrap-around", []uint16{65534, 65535, 0, 1}, seqStats{Expected: 4, Received: 4}},
		{"loss across wrap-around", []uint16{65534, 0, 1}, seqStats{Expected: 4, Received: 3}},
		{"reordered across wrap-around", []uint16{65535, 1, 0, 2}, seqStats{Expected: 4, Received: 4, Recovered: 1}},
		{"earlier than the first packet", []uint16{5, 6, 4, 7}, seqStats{Expected: 4, Received: 4, Recovered: 1}},
		{"big gap", []uint16{1, 1001}, seqStats{Expected: 1001, Received: 2}},
		{"too late to tell", append(seqRange(100, lossWindow+200), 150), seqStats{Expected: lossWindow + 100, Received: lossWindow + 100, Late: 1}},
		{"gap wider than the window", []uint16{1, 2, 2 + lossWindow + 10, 3}, seqStats{Expected: lossWindow + 12, Received: 3, Late: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c seqCounter
			for _, s := range tt.seqs {
				c.push(s)
			}
			if got := c.stats(); got != tt.want {
				t.Errorf("stats = %+v, want %+v (lost %d)", got, tt.want, got.Lost())
			}
		})
	}
}

// TestSeqCounterLongRun wraps the 16-bit sequence number several times with 1 % loss, some
// reordering and duplicates, and checks the totals.
func TestSeqCounterLongRun(t *testing.T) {
	var c seqCounter
	const n = 300_000
	lost := 0
	seq := uint16(60000)
	var held []uint16
	for i := range n {
		s := seq
		seq++
		switch {
		case i%100 == 50:
			lost++
			continue
		case i%97 == 0:
			held = append(held, s) // arrives three packets later
			continue
		}
		c.push(s)
		if i%89 == 0 {
			c.push(s) // duplicate
		}
		if i%97 == 3 && len(held) > 0 {
			for _, h := range held {
				c.push(h)
			}
			held = held[:0]
		}
	}
	got := c.stats()
	if got.Expected != n || got.Lost() != uint64(lost) {
		t.Errorf("expected %d lost %d, want %d and %d (%+v)", got.Expected, got.Lost(), n, lost, got)
	}
	if got.Duplicates == 0 || got.Recovered == 0 {
		t.Errorf("duplicates and reordering not seen: %+v", got)
	}
}

func seqRange(from, to int) []uint16 {
	var s []uint16
	for i := from; i < to; i++ {
		s = append(s, uint16(i))
	}
	return s
}
