package sfu

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// TrackInfo describes a published track.
type TrackInfo struct {
	ID     string
	Kind   webrtc.RTPCodecType
	Source string // camera, microphone, screen
	Codec  webrtc.RTPCodecCapability
}

// Track is a published track: one to three layers (simulcast) of one source, from a remote
// publisher or from the appliance's own encoder. Subscribers receive it through DownTracks.
type Track struct {
	TrackInfo
	Participant string // the publisher's identity

	layers atomic.Pointer[[]*Layer] // ordered by quality, low first
	mu     sync.Mutex               // serializes layer additions and dynacast updates
	muted  atomic.Bool

	// requestKeyframe is how subscribers' PLI/FIR and layer switches reach whoever
	// produces a layer; it must not block. Under mu: a reconnected publisher replaces it
	// (Adopt), with onActiveLayers.
	requestKeyframe func(*Layer)
	startKeyframe   func(*Layer) // optional: SetStartKeyframe
	// onActiveLayers is told, on change, which layers have at least one subscriber (dynacast).
	// It is called under mu, in order, and must not call back into the track.
	onActiveLayers func(active []*Layer)
	lastActive     []*Layer

	clockStart atomic.Pointer[time.Time] // the appliance's own tracks: capture time of timestamp 0
}

// NewTrack makes a track with no layers yet. requestKeyframe is called when a subscriber
// needs a keyframe of a layer; onActiveLayers (may be nil) when the set of layers anyone
// receives changes. Neither may block.
func NewTrack(info TrackInfo, participant string, requestKeyframe func(*Layer), onActiveLayers func([]*Layer)) *Track {
	t := &Track{TrackInfo: info, Participant: participant, requestKeyframe: requestKeyframe, onActiveLayers: onActiveLayers}
	t.layers.Store(&[]*Layer{})
	return t
}

// AddLayer adds (or returns the existing) layer with this rid.
func (t *Track) AddLayer(rid string, q Quality, width, height int) *Layer {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.layers.Load()
	for _, l := range old {
		if l.RID == rid {
			return l
		}
	}
	l := newLayer(t, rid, q, width, height)
	next := append(slices.Clone(old), l)
	slices.SortStableFunc(next, func(a, b *Layer) int { return int(a.Quality) - int(b.Quality) })
	t.layers.Store(&next)
	return l
}

// Adopt hands the track to a new producer: a publisher that reconnected (an encoder
// restarted, a page reloaded) goes on feeding the same track, so its subscribers keep their
// down tracks and see one continuous stream. Every layer restarts its numbering:
// subscribers wait for its next keyframe and continue their own numbering from there.
func (t *Track) Adopt(requestKeyframe func(*Layer), onActiveLayers func([]*Layer)) {
	t.mu.Lock()
	t.requestKeyframe, t.startKeyframe, t.onActiveLayers, t.lastActive = requestKeyframe, nil, onActiveLayers, nil
	t.mu.Unlock()
	for _, l := range t.Layers() {
		l.epoch.Add(1)
	}
	t.layersChanged()
}

// keyframeRequester is the producer's keyframe request, for starts or for repairs.
func (t *Track) keyframeRequester(start bool) func(*Layer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if start && t.startKeyframe != nil {
		return t.startKeyframe
	}
	return t.requestKeyframe
}

// SetStartKeyframe gives the producer a separate request for keyframes subscribers start on
// (the appliance's encoder serves those sooner than repairs); without it they go to the
// requestKeyframe given to NewTrack.
func (t *Track) SetStartKeyframe(f func(*Layer)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.startKeyframe = f
}

// Layers returns the track's layers, lowest quality first.
func (t *Track) Layers() []*Layer { return *t.layers.Load() }

// Simulcast reports whether the track has more than one layer.
func (t *Track) Simulcast() bool { return len(t.Layers()) > 1 }

// Muted reports whether the publisher muted the track: nothing of it is forwarded.
func (t *Track) Muted() bool { return t.muted.Load() }

// SetMuted mutes or unmutes the track. Subscribers restart on a keyframe after unmuting.
func (t *Track) SetMuted(m bool) {
	if t.muted.Swap(m) == m || m {
		return
	}
	for _, l := range t.Layers() {
		for _, d := range *l.subs.Load() {
			d.restart()
		}
	}
}

// Subscribers is how many down tracks receive any layer of this track.
func (t *Track) Subscribers() int {
	n := 0
	for _, l := range t.Layers() {
		n += l.Subscribers()
	}
	return n
}

// layersChanged recomputes which layers have subscribers and tells the producer. Computing
// and telling happen under the track's lock: subscribers of different layers change on
// their own goroutines, and a set computed before another change must not reach the
// producer after it (it would pause a layer someone waits for, until the next change).
func (t *Track) layersChanged() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.onActiveLayers == nil {
		return
	}
	var active []*Layer
	for _, l := range t.Layers() {
		if l.Subscribers() > 0 {
			active = append(active, l)
		}
	}
	if slices.Equal(active, t.lastActive) {
		return
	}
	t.lastActive = active
	t.onActiveLayers(active)
}

// mediaTime turns a capture time into a 90 kHz RTP timestamp on the track's own clock,
// shared by its layers.
func (t *Track) mediaTime(capture time.Time) uint32 {
	start := t.clockStart.Load()
	if start == nil {
		t.clockStart.CompareAndSwap(nil, &capture)
		start = t.clockStart.Load()
	}
	return uint32(capture.Sub(*start) * videoClockRate / time.Second)
}

const videoClockRate = 90000

// Measure updates the layers' bitrates; the room calls it about once a second.
func (t *Track) Measure(elapsed time.Duration) {
	for _, l := range t.Layers() {
		l.measure(elapsed)
	}
}
