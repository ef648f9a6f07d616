package bwe

const (
	ackedWindow = 500_000_000 // the acknowledged rate is measured over this much arrival time
	ackedBin    = 25_000_000  // in bins of this much
	ackedBins   = ackedWindow / ackedBin
	// ackedMinSpan: a rate over less time than this says more about bursts than about the link.
	ackedMinSpan = 150_000_000
)

// rateWindow is the rate at which acknowledged packets arrived over the last ackedWindow of
// the receiver's clock, kept in bins so that it needs no memory per packet.
type rateWindow struct {
	bins    [ackedBins]bin
	newest  int64 // latest arrival added
	started bool
}

type bin struct {
	slot      int64 // arrival / ackedBin
	bytes     int64
	first     int64 // arrival of its earliest packet
	firstSize int64
}

func (w *rateWindow) add(arrival int64, size int) {
	if !w.started || arrival-w.newest > clockJump || w.newest-arrival > clockJump {
		*w = rateWindow{newest: arrival, started: true}
	}
	w.newest = max(w.newest, arrival)
	slot := floorDiv(arrival, ackedBin)
	if slot <= floorDiv(w.newest, ackedBin)-ackedBins {
		return // older than the window
	}
	b := &w.bins[floorMod(slot, ackedBins)]
	if b.slot != slot || b.bytes == 0 {
		*b = bin{slot: slot, first: arrival, firstSize: int64(size)}
	} else if arrival < b.first {
		b.first, b.firstSize = arrival, int64(size)
	}
	b.bytes += int64(size)
}

// rate in bit/s: what arrived after the window's first packet, over the time since it
// arrived (counting the first packet too would overstate sparse flows). ok is false until
// that time is ackedMinSpan.
func (w *rateWindow) rate() (bps float64, ok bool) {
	if !w.started {
		return 0, false
	}
	last := floorDiv(w.newest, ackedBin)
	var bytes int64
	var oldest *bin
	for i := range w.bins {
		b := &w.bins[i]
		if b.bytes == 0 || b.slot <= last-ackedBins || b.slot > last {
			continue
		}
		bytes += b.bytes
		if oldest == nil || b.slot < oldest.slot {
			oldest = b
		}
	}
	if oldest == nil || w.newest-oldest.first < ackedMinSpan {
		return 0, false
	}
	return float64((bytes-oldest.firstSize)*8) / seconds(w.newest-oldest.first), true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }
