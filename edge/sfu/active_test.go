package sfu

import (
	"slices"
	"sync"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestActiveLayersFollowSubscribersUnderConcurrency: subscribers of different layers come
// and go on their own goroutines; the last set of active layers the producer is told is
// always the set that has subscribers, never an older one that arrived late.
func TestActiveLayersFollowSubscribersUnderConcurrency(t *testing.T) {
	var mu sync.Mutex
	var told []*Layer
	track := NewTrack(TrackInfo{ID: "v", Kind: webrtc.RTPCodecTypeVideo, Codec: testH264}, "p", nil, func(active []*Layer) {
		mu.Lock()
		told = slices.Clone(active)
		mu.Unlock()
	})
	layers := []*Layer{track.AddLayer("q", Low, 0, 0), track.AddLayer("h", Medium, 0, 0), track.AddLayer("f", High, 0, 0)}
	for round := range 500 {
		downs := make([]*DownTrack, 6)
		var wg sync.WaitGroup
		for i := range downs {
			downs[i] = &DownTrack{}
			wg.Go(func() {
				l := layers[(round+i)%len(layers)]
				l.addSub(downs[i])
				if i%2 == 0 {
					l.removeSub(downs[i])
				}
			})
		}
		wg.Wait()
		var want []*Layer
		for _, l := range track.Layers() {
			if l.Subscribers() > 0 {
				want = append(want, l)
			}
		}
		mu.Lock()
		got := told
		mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: the producer was last told %v are needed; %v are", round, rids(got), rids(want))
		}
		for i, d := range downs {
			layers[(round+i)%len(layers)].removeSub(d)
		}
	}
}

func rids(ls []*Layer) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.RID)
	}
	return out
}
