package sfu

import (
	"log/slog"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestSpeakerFromShortSounds: a microphone that is loud for one packet in each look of the
// room (a beep, a stressed syllable) is speaking; one that then stops sending is not.
func TestSpeakerFromShortSounds(t *testing.T) {
	r := &Room{Name: "t", log: slog.New(slog.DiscardHandler), participants: map[string]*Participant{}, levels: map[string]float64{}}
	alice := NewParticipant("alice", "Alice", nil)
	r.Join(alice)
	track := NewTrack(TrackInfo{ID: "mic", Kind: webrtc.RTPCodecTypeAudio, Codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}}, "alice", nil, nil)
	mic := track.AddLayer("", High, 0, 0)
	r.Publish(alice, track)

	for range 4 { // 250 ms looks: one -10 dBov packet, then 11 silent ones
		mic.SetAudioLevel(10)
		for range 11 {
			mic.SetAudioLevel(127)
		}
		r.detectSpeakers(r.Participants())
	}
	if got := r.Speakers(); len(got) != 1 || got[0].ParticipantID != "alice" {
		t.Fatalf("speakers %v after a beep in every look; want alice", got)
	}
	for range 6 { // no packets at all
		r.detectSpeakers(r.Participants())
	}
	if got := r.Speakers(); len(got) != 0 {
		t.Fatalf("speakers %v after the microphone stopped sending; want none", got)
	}
}
