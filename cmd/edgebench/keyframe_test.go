package main

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// annexB joins NAL units with start codes.
func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

func nal(typ byte, size int) []byte {
	b := bytes.Repeat([]byte{0xab}, size)
	b[0] = 0x60 | typ
	return b
}

var (
	idrAU    = annexB(nal(7, 12), nal(8, 4), nal(nalIDR, 5000)) // STAP-A(SPS, PPS) + FU-A fragments
	pAU      = annexB(nal(1, 3000))
	smallIDR = annexB(nal(7, 12), nal(8, 4), nal(nalIDR, 300)) // STAP-A(SPS, PPS), then the IDR whole
)

// packetize turns access units into RTP packets the way a sender does (1200-byte payloads,
// marker on each picture's last packet), numbering from seq.
func packetize(seq uint16, aus ...[]byte) []rtpInfo {
	var out []rtpInfo
	var pay codecs.H264Payloader
	for i, au := range aus {
		payloads := pay.Payload(1200, au)
		for j, p := range payloads {
			out = append(out, rtpInfo{seq: seq, ts: uint32(3000 * (i + 1)), marker: j == len(payloads)-1, payload: p})
			seq++
		}
	}
	return out
}

func TestKeyframeDetector(t *testing.T) {
	idr := packetize(100, idrAU)
	if len(idr) < 4 {
		t.Fatalf("the IDR should take several packets, got %d", len(idr))
	}
	pThenIDR := packetize(65530, pAU, idrAU) // wraps around
	tests := []struct {
		name     string
		pkts     []rtpInfo
		complete int // index in pkts of the packet that completes the keyframe; -1 none
	}{
		{"in order", idr, len(idr) - 1},
		{"small IDR", packetize(7, smallIDR), -2},
		{"P picture only", packetize(1, pAU), -1},
		{"P then IDR across wrap-around", pThenIDR, len(pThenIDR) - 1},
		{"missing packet", append(idr[:2:2], idr[3:]...), -1},
		{"retransmission completes it", append(append(idr[:2:2], idr[3:]...), idr[2]), len(idr) - 1},
		{"marker first", append([]rtpInfo{idr[len(idr)-1]}, idr[:len(idr)-1]...), len(idr) - 1},
		{"duplicates", append([]rtpInfo{idr[0], idr[0], idr[1]}, idr[1:]...), -2},
		{"joined mid-IDR", idr[2:], -1},
		{"joined mid-IDR, then the next IDR", append(packetize(50, idrAU)[2:], packetize(50+uint16(len(idr)), pAU, idrAU)...), -2},
		{"marker lost", idr[:len(idr)-1], -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d keyframeDetector
			got := -1
			for i, p := range tt.pkts {
				if d.push(p) {
					got = i
					break
				}
			}
			want := tt.complete
			if want == -2 {
				want = len(tt.pkts) - 1
			}
			if got != want {
				t.Errorf("completed at packet %d, want %d", got, want)
			}
		})
	}
}

func TestParseRTP(t *testing.T) {
	marshal := func(h rtp.Header, payload []byte, padding byte) []byte {
		if h.Extension {
			if err := h.SetExtension(1, []byte{9, 9, 9}); err != nil {
				t.Fatal(err)
			}
		}
		p := rtp.Packet{Header: h, Payload: payload, PaddingSize: padding}
		if padding > 0 {
			p.Header.Padding = true
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	payload := []byte{0x65, 1, 2, 3}
	tests := []struct {
		name string
		pkt  []byte
		ok   bool
	}{
		{"plain", marshal(rtp.Header{Version: 2, Marker: true, SequenceNumber: 513, Timestamp: 0x01020304}, payload, 0), true},
		{"CSRCs", marshal(rtp.Header{Version: 2, Marker: true, SequenceNumber: 513, Timestamp: 0x01020304, CSRC: []uint32{1, 2}}, payload, 0), true},
		{"extension and padding", marshal(rtp.Header{Version: 2, Marker: true, SequenceNumber: 513, Timestamp: 0x01020304,
			Extension: true, ExtensionProfile: 0xBEDE}, payload, 7), true},
		{"short", []byte{0x80, 0, 0}, false},
		{"version 1", append([]byte{0x40}, make([]byte, 15)...), false},
		{"padding overflow", append([]byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 1, 2, 200), false},
		{"extension overflow", append([]byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0xbe, 0xde, 0, 9), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseRTP(tt.pkt)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if got.seq != 513 || got.ts != 0x01020304 || !got.marker || !bytes.Equal(got.payload, payload) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestH264Payload(t *testing.T) {
	tests := []struct {
		name           string
		payload        []byte
		startsNAL, idr bool
	}{
		{"empty", nil, false, false},
		{"IDR", []byte{0x65, 1}, true, true},
		{"non-IDR slice", []byte{0x41, 1}, true, false},
		{"SPS", []byte{0x67, 1}, true, false},
		{"STAP-A with IDR", []byte{0x78, 0, 2, 0x67, 1, 0, 2, 0x65, 1}, true, true},
		{"STAP-A without IDR", []byte{0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1}, true, false},
		{"STAP-A truncated", []byte{0x78, 0, 9, 0x65}, true, false},
		{"FU-A IDR start", []byte{0x7c, 0x85, 1}, true, true},
		{"FU-A IDR middle", []byte{0x7c, 0x05, 1}, false, false},
		{"FU-A IDR end", []byte{0x7c, 0x45, 1}, false, false},
		{"FU-A non-IDR start", []byte{0x7c, 0x81, 1}, true, false},
		{"FU-A truncated", []byte{0x7c}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, i := h264Payload(tt.payload)
			if s != tt.startsNAL || i != tt.idr {
				t.Errorf("startsNAL, idr = %v, %v; want %v, %v", s, i, tt.startsNAL, tt.idr)
			}
		})
	}
}

// FuzzViewerParsers feeds arbitrary packets to what a viewer runs on every packet it reads:
// none may panic, whatever a server sends.
func FuzzViewerParsers(f *testing.F) {
	for _, p := range packetize(65535, idrAU) {
		b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: p.seq, Timestamp: p.ts, Marker: p.marker}, Payload: p.payload}).Marshal()
		f.Add(b)
	}
	f.Add([]byte{0xb0, 0x80, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 0x78, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d keyframeDetector
		var c seqCounter
		for range 3 {
			p, ok := parseRTP(b)
			if !ok {
				return
			}
			c.push(p.seq)
			d.push(p)
			if len(b) > 2 {
				b[3]++ // next sequence number
			}
		}
	})
}
