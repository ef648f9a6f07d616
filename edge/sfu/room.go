package sfu

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Subscriber is the signalling side of a participant that receives media: a meeting
// client's WebSocket, a WHEP session, or a link to a central node. The room calls it from
// its own goroutines; implementations must not block (queue and return).
type Subscriber interface {
	// TrackPublished offers a track that another participant published.
	TrackPublished(t *Track)
	// TrackUnpublished withdraws it.
	TrackUnpublished(t *Track)
	// Event tells about the room: participants coming and going, mutes, speakers.
	Event(e Event)
}

// EventKind says what happened in a room.
type EventKind int

const (
	ParticipantJoined EventKind = iota
	ParticipantLeft
	TrackMuted
	SpeakersChanged
)

// Event is one change in a room, as subscribers are told about it.
type Event struct {
	Kind        EventKind
	Participant ParticipantInfo // joined; left and muted use its ID
	Reason      string          // left
	Track       *Track          // muted
	Speakers    []Speaker       // speakers changed, loudest first
}

// Speaker is a participant speaking now, with a level from 0 (silence) to 1 (loudest).
type Speaker struct {
	ParticipantID string
	Level         float64
}

// ParticipantInfo is a participant as the others see it.
type ParticipantInfo struct {
	ID, Name string
	Tracks   []*Track
}

// Participant is someone in a room: it may publish tracks and may receive the others'.
type Participant struct {
	ID, Name string
	room     *Room

	mu     sync.Mutex
	tracks []*Track
	sub    Subscriber // nil for publish-only participants (WHIP, the appliance camera)
	gone   bool
}

// NewParticipant makes a participant; sub is nil when it receives nothing.
func NewParticipant(id, name string, sub Subscriber) *Participant {
	return &Participant{ID: id, Name: cmp.Or(name, id), sub: sub}
}

// Tracks returns the tracks the participant publishes.
func (p *Participant) Tracks() []*Track {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tracks)
}

// Track finds one of the participant's tracks by id.
func (p *Participant) Track(id string) *Track {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.tracks {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// Info is the participant as the others see it.
func (p *Participant) Info() ParticipantInfo {
	return ParticipantInfo{ID: p.ID, Name: p.Name, Tracks: p.Tracks()}
}

// Room is where participants meet.
type Room struct {
	Name string
	log  *slog.Logger

	mu           sync.Mutex
	participants map[string]*Participant
	speakers     []Speaker
	levels       map[string]float64 // smoothed audio level per participant
	lastTick     time.Time
	done         chan struct{}
	closeOnce    sync.Once
}

// NewRoom makes a room and starts its clock (bitrate measurement, speaker detection).
func NewRoom(name string, log *slog.Logger) *Room {
	r := &Room{Name: name, log: log, participants: map[string]*Participant{}, levels: map[string]float64{}, done: make(chan struct{}), lastTick: time.Now()}
	go r.run()
	return r
}

// Close stops the room's clock. Participants should have left.
func (r *Room) Close() { r.closeOnce.Do(func() { close(r.done) }) }

// tickEvery paces bitrate measurement and speaker detection.
const tickEvery = 250 * time.Millisecond

func (r *Room) run() {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			r.tick(now)
		}
	}
}

func (r *Room) tick(now time.Time) {
	r.mu.Lock()
	elapsed := now.Sub(r.lastTick)
	measure := elapsed >= time.Second
	if measure {
		r.lastTick = now
	}
	ps := r.listLocked()
	r.mu.Unlock()
	for _, p := range ps {
		for _, t := range p.Tracks() {
			if measure {
				t.Measure(elapsed)
			}
		}
	}
	r.detectSpeakers(ps)
}

// Participants lists who is in the room.
func (r *Room) Participants() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked()
}

func (r *Room) listLocked() []*Participant {
	ps := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *Participant) int { return cmp.Compare(a.ID, b.ID) })
	return ps
}

// Participant finds one by identity.
func (r *Room) Participant(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.participants[id]
}

// Len is the number of participants.
func (r *Room) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.participants)
}

// Join adds p. A participant already there with the same identity is returned as replaced
// (the caller ends its session); the others are told, and p is offered every track already
// published.
func (r *Room) Join(p *Participant) (replaced *Participant) {
	r.mu.Lock()
	replaced = r.participants[p.ID]
	r.participants[p.ID] = p
	p.room = r
	others := r.othersLocked(p)
	r.mu.Unlock()
	if replaced != nil {
		// A reconnect: the newcomer inherits the tracks, and its subscribers keep receiving
		// them while it publishes again (Track.Adopt). Tracks it does not publish again stay
		// silent until it leaves.
		replaced.mu.Lock()
		inherited := replaced.tracks
		replaced.tracks, replaced.gone = nil, true
		replaced.mu.Unlock()
		p.mu.Lock()
		p.tracks = append(inherited, p.tracks...)
		p.mu.Unlock()
	}
	info := p.Info()
	for _, o := range others {
		if o.sub != nil && replaced == nil {
			o.sub.Event(Event{Kind: ParticipantJoined, Participant: info})
		}
		if p.sub != nil {
			for _, t := range o.Tracks() {
				p.sub.TrackPublished(t)
			}
		}
	}
	r.log.Info("participant joined", "participant", p.ID, "participants", r.Len(), "replaced", replaced != nil)
	return replaced
}

// Leave removes p and its tracks; the others are told why.
func (r *Room) Leave(p *Participant, reason string) {
	r.mu.Lock()
	if r.participants[p.ID] != p {
		r.mu.Unlock()
		return // already gone, or replaced by a newer session
	}
	delete(r.participants, p.ID)
	others := r.othersLocked(p)
	delete(r.levels, p.ID)
	r.mu.Unlock()
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
	r.removeTracks(p, others)
	for _, o := range others {
		if o.sub != nil {
			o.sub.Event(Event{Kind: ParticipantLeft, Participant: ParticipantInfo{ID: p.ID, Name: p.Name}, Reason: reason})
		}
	}
	r.log.Info("participant left", "participant", p.ID, "reason", reason, "participants", r.Len())
}

func (r *Room) removeTracks(p *Participant, others []*Participant) {
	p.mu.Lock()
	tracks := p.tracks
	p.tracks = nil
	p.mu.Unlock()
	for _, t := range tracks {
		for _, o := range others {
			if o.sub != nil {
				o.sub.TrackUnpublished(t)
			}
		}
	}
}

func (r *Room) othersLocked(p *Participant) []*Participant {
	others := make([]*Participant, 0, len(r.participants))
	for _, o := range r.participants {
		if o != p {
			others = append(others, o)
		}
	}
	return others
}

// Publish adds a track of p and offers it to everyone else in the room.
func (r *Room) Publish(p *Participant, t *Track) {
	p.mu.Lock()
	if p.gone {
		p.mu.Unlock()
		return
	}
	p.tracks = append(p.tracks, t)
	p.mu.Unlock()
	r.mu.Lock()
	others := r.othersLocked(p)
	r.mu.Unlock()
	for _, o := range others {
		if o.sub != nil {
			o.sub.TrackPublished(t)
		}
	}
	r.log.Info("track published", "participant", p.ID, "track", t.ID, "kind", t.Kind.String(), "codec", t.Codec.MimeType)
}

// Unpublish withdraws a track of p.
func (r *Room) Unpublish(p *Participant, t *Track) {
	p.mu.Lock()
	i := slices.Index(p.tracks, t)
	if i < 0 {
		p.mu.Unlock()
		return
	}
	p.tracks = slices.Delete(p.tracks, i, i+1)
	p.mu.Unlock()
	for _, o := range r.Participants() {
		if o != p && o.sub != nil {
			o.sub.TrackUnpublished(t)
		}
	}
}

// SetMuted mutes or unmutes a track of p and tells the others.
func (r *Room) SetMuted(p *Participant, t *Track, muted bool) {
	t.SetMuted(muted)
	for _, o := range r.Participants() {
		if o != p && o.sub != nil {
			o.sub.Event(Event{Kind: TrackMuted, Participant: ParticipantInfo{ID: p.ID}, Track: t})
		}
	}
}

// Speakers is the latest list of active speakers, loudest first.
func (r *Room) Speakers() []Speaker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.speakers)
}

// speakingLevel is the smoothed level (0..1) above which a participant counts as speaking:
// about -50 dBov, well above the comfort noise of a muted microphone.
const speakingLevel = 0.55

func (r *Room) detectSpeakers(ps []*Participant) {
	var speakers []Speaker
	r.mu.Lock()
	for _, p := range ps {
		level := -1.0
		for _, t := range p.Tracks() {
			if t.Kind != webrtc.RTPCodecTypeAudio || t.Muted() {
				continue
			}
			for _, l := range t.Layers() {
				level = max(level, 1-float64(l.takeAudioLevel())/127)
			}
		}
		if level < 0 {
			continue
		}
		smooth := 0.6*r.levels[p.ID] + 0.4*level
		r.levels[p.ID] = smooth
		if smooth >= speakingLevel {
			speakers = append(speakers, Speaker{ParticipantID: p.ID, Level: float64(int(smooth*100)) / 100})
		}
	}
	slices.SortStableFunc(speakers, func(a, b Speaker) int { return cmp.Compare(b.Level, a.Level) })
	changed := !slices.EqualFunc(speakers, r.speakers, func(a, b Speaker) bool { return a.ParticipantID == b.ParticipantID })
	if changed {
		r.speakers = speakers
	}
	r.mu.Unlock()
	if !changed {
		return
	}
	for _, p := range ps {
		if p.sub != nil {
			p.sub.Event(Event{Kind: SpeakersChanged, Speakers: speakers})
		}
	}
}
