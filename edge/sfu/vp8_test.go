package sfu

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

type vp8Binding struct{ recordingBinding }

func (vp8Binding) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}}
}

// vp8Packet is a one-packet VP8 picture with a 15-bit PictureID, TL0PICIDX and KEYIDX.
func vp8Packet(pic uint16, tl0, key uint8, keyframe bool, layer byte) []byte {
	hdr := byte(0x01) // P bit: inter frame
	if keyframe {
		hdr = 0x00
	}
	return []byte{0x90, 0xd0, 0x80 | byte(pic>>8), byte(pic), tl0, key & 0x1f, hdr, layer}
}

// TestVP8NumberingContinuesAcrossSwitches: after a switch to a layer whose PictureID,
// TL0PICIDX and KEYIDX are far behind, the subscriber still sees each one count up by one,
// and a retransmission of a packet from before the switch carries its original numbers.
func TestVP8NumberingContinuesAcrossSwitches(t *testing.T) {
	track := NewTrack(TrackInfo{ID: "v", Kind: webrtc.RTPCodecTypeVideo, Codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}, "alice", nil, nil)
	low, high := track.AddLayer("q", Low, 320, 180), track.AddLayer("f", High, 1280, 720)
	w := &recordingWriter{}
	d := NewDownTrack(track, "viewer", nil)
	if _, err := d.Bind(vp8Binding{recordingBinding{fakeBinding{ssrc: 1234}, w}}); err != nil {
		t.Fatal(err)
	}
	d.SetMaxQuality(High)
	// High's numbers: PictureID 30000.., TL0PICIDX 200.., KEYIDX 7; low's: 5.., 3.., 30.
	var seqH, seqL uint16 = 100, 5000
	send := func(l *Layer, seq *uint16, pic uint16, tl0, key uint8, kf bool, tag byte) {
		l.WriteRTP(*seq, uint32(pic)*6000, true, vp8Packet(pic, tl0, key, kf, tag), false)
		*seq++
	}
	for i := range uint16(3) {
		send(high, &seqH, 30000+i, 200+uint8(i), 7, i == 0, 2)
		send(low, &seqL, 5+i, 3+uint8(i), 30, i == 0, 0)
	}
	d.SetMaxQuality(Low)
	send(low, &seqL, 8, 6, 31, true, 0) // low's keyframe: the switch
	send(low, &seqL, 9, 7, 31, false, 0)
	if len(w.pkts) != 5 {
		t.Fatalf("%d packets sent; want 3 of high and 2 of low", len(w.pkts))
	}
	for i, p := range w.pkts {
		f, ok := parseVP8(p.Payload)
		if !ok {
			t.Fatalf("packet %d: descriptor does not parse", i)
		}
		pic, tl0, key := f.picture(p.Payload), p.Payload[f.tl0], p.Payload[f.key]&0x1f
		wantKey := uint8(7)
		if i >= 3 {
			wantKey = 8
		}
		if pic != 30000+uint16(i) || tl0 != 200+uint8(i) || key != wantKey {
			t.Errorf("packet %d (layer %d): PictureID %d TL0PICIDX %d KEYIDX %d; want %d %d %d",
				i, p.Payload[len(p.Payload)-1], pic, tl0, key, 30000+i, 200+i, wantKey)
		}
	}
	checkContiguousPT(t, w.pkts, 96)

	// A NACK for the last packet of high is answered with high's own numbers.
	sent := len(w.pkts)
	d.resend(w.pkts[2].SequenceNumber)
	if len(w.pkts) != sent+1 {
		t.Fatal("the NACKed packet from before the switch was not resent")
	}
	if r := w.pkts[sent]; parseVP8Picture(r.Payload) != 30002 {
		t.Errorf("retransmission's PictureID %d; want 30002 as first sent", parseVP8Picture(r.Payload))
	}
	send(low, &seqL, 10, 8, 31, false, 0)
	if p := w.pkts[len(w.pkts)-1]; parseVP8Picture(p.Payload) != 30005 {
		t.Errorf("the low layer's next picture after a retransmission: PictureID %d; want 30005", parseVP8Picture(p.Payload))
	}
}

func parseVP8Picture(p []byte) uint16 {
	f, _ := parseVP8(p)
	return f.picture(p)
}

func checkContiguousPT(t *testing.T, pkts []rtp.Packet, pt uint8) {
	t.Helper()
	for i, p := range pkts {
		if p.PayloadType != pt || i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: PT %d sequence %d after %d", i, p.PayloadType, p.SequenceNumber, pkts[max(0, i-1)].SequenceNumber)
		}
	}
}
