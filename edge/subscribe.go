package edge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/edgeflux/edge/edge/sfu"
)

// audioShare is what each audio track is assumed to take of a subscriber's bandwidth.
const audioShare = 40_000

// subscriber sends room tracks down one peer connection: a meeting client's subscribe
// connection or a WHEP session. It owns the connection's down tracks, answers their RTCP and
// shares the connection's bandwidth estimate among them.
type subscriber struct {
	srv *Server
	id  string
	pc  *webrtc.PeerConnection
	// onLayer is told when a down track's forwarded layer changes (may be nil).
	onLayer func(d *sfu.DownTrack, l *sfu.Layer)

	mu       sync.Mutex
	downs    map[string]*downEntry // by track id
	estimate int                   // latest REMB for the connection, bit/s
	done     chan struct{}
	doneOnce sync.Once
}

type downEntry struct {
	down   *sfu.DownTrack
	sender *webrtc.RTPSender
}

func newSubscriber(srv *Server, id string, pc *webrtc.PeerConnection) *subscriber {
	s := &subscriber{srv: srv, id: id, pc: pc, downs: map[string]*downEntry{}, done: make(chan struct{})}
	srv.wg.Add(1)
	go func() { defer srv.wg.Done(); s.tick() }()
	return s
}

// add offers t on a new send-only transceiver (the server offers: meeting clients); the
// track flows once the connection is negotiated and up.
func (s *subscriber) add(t *sfu.Track) (*webrtc.RTPTransceiver, error) {
	return s.start(t, func(d *sfu.DownTrack) (*webrtc.RTPTransceiver, error) {
		return s.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	})
}

// attach sends t on the client's offered receive-only section of its kind (the client
// offers: WHEP).
func (s *subscriber) attach(t *sfu.Track) error {
	_, err := s.start(t, func(d *sfu.DownTrack) (*webrtc.RTPTransceiver, error) {
		sender, err := s.pc.AddTrack(d)
		if err != nil {
			return nil, err
		}
		for _, tr := range s.pc.GetTransceivers() {
			if tr.Sender() == sender {
				return tr, nil
			}
		}
		return nil, fmt.Errorf("no transceiver for %s", t.ID)
	})
	return err
}

func (s *subscriber) start(t *sfu.Track, addTo func(*sfu.DownTrack) (*webrtc.RTPTransceiver, error)) (*webrtc.RTPTransceiver, error) {
	s.mu.Lock()
	_, dup := s.downs[t.ID]
	s.mu.Unlock()
	if dup {
		return nil, nil
	}
	var d *sfu.DownTrack
	d = sfu.NewDownTrack(t, s.id, func(l *sfu.Layer) {
		s.srv.metrics.layerSwitches.Add(1)
		if s.onLayer != nil {
			s.onLayer(d, l)
		}
	})
	tr, err := addTo(d)
	if err != nil {
		return nil, fmt.Errorf("add track %s: %w", t.ID, err)
	}
	s.mu.Lock()
	s.downs[t.ID] = &downEntry{down: d, sender: tr.Sender()}
	s.mu.Unlock()
	s.srv.wg.Add(1)
	go func() { defer s.srv.wg.Done(); s.readRTCP(d, tr.Sender()) }()
	return tr, nil
}

// remove stops sending a track; the caller renegotiates.
func (s *subscriber) remove(trackID string) bool {
	s.mu.Lock()
	e := s.downs[trackID]
	delete(s.downs, trackID)
	s.mu.Unlock()
	if e == nil {
		return false
	}
	e.down.Close()
	_ = s.pc.RemoveTrack(e.sender)
	s.srv.viewerLeft(s.id + "/" + trackID)
	return true
}

// down finds the down track of a track.
func (s *subscriber) down(trackID string) *sfu.DownTrack {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.downs[trackID]; e != nil {
		return e.down
	}
	return nil
}

func (s *subscriber) all() []*sfu.DownTrack {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := make([]*sfu.DownTrack, 0, len(s.downs))
	for _, e := range s.downs {
		ds = append(ds, e.down)
	}
	return ds
}

// connected asks for a keyframe on every down track: only now can one reach the subscriber.
func (s *subscriber) connected() {
	for _, d := range s.all() {
		d.RequestKeyframe()
	}
}

func (s *subscriber) readRTCP(d *sfu.DownTrack, sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if closed(err) {
			return
		}
		if err != nil { // a malformed compound packet: count it, keep listening
			s.srv.metrics.malformed.Add(1)
			continue
		}
		s.srv.metrics.rtcpIn.Add(uint64(len(pkts)))
		d.HandleRTCP(pkts)
		for _, p := range pkts {
			if remb, ok := p.(*rtcp.ReceiverEstimatedMaximumBitrate); ok {
				s.mu.Lock()
				s.estimate = int(remb.Bitrate)
				s.mu.Unlock()
				s.allocate()
			}
		}
	}
}

// allocate shares the connection's estimate among its tracks: audio first, the rest
// equally among the video tracks, and lets each choose its layer.
func (s *subscriber) allocate() {
	s.mu.Lock()
	estimate := s.estimate
	var videos []*sfu.DownTrack
	audios := 0
	for _, e := range s.downs {
		if e.down.Kind() == webrtc.RTPCodecTypeVideo {
			videos = append(videos, e.down)
		} else {
			audios++
		}
	}
	s.mu.Unlock()
	share := 0
	if estimate > 0 && len(videos) > 0 {
		share = max(1, (estimate-audios*audioShare)/len(videos))
	}
	for _, d := range videos {
		d.SetFeedback(share)
		s.srv.viewerFeedback(s.id, d, share)
	}
}

// tick lets layer trials advance even when no feedback comes,
// and sends the subscriber one sender report per track each second (the SFU writes its own:
// pion's report interceptor would take a lock and read the clock for every packet sent).
func (s *subscriber) tick() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.allocate()
			if n%2 == 0 {
				s.sendReports(now)
			}
		}
	}
}

func (s *subscriber) sendReports(now time.Time) {
	var pkts []rtcp.Packet
	for _, d := range s.all() {
		if sr, ok := d.SenderReport(now); ok {
			pkts = append(pkts, sr)
		}
	}
	if len(pkts) > 0 {
		_ = s.pc.WriteRTCP(pkts)
	}
}

// close detaches every down track.
func (s *subscriber) close() {
	s.doneOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	downs := s.downs
	s.downs = map[string]*downEntry{}
	s.mu.Unlock()
	for id, e := range downs {
		e.down.Close()
		s.srv.viewerLeft(s.id + "/" + id)
	}
}

// closed tells a read error of a connection that has ended from one about a bad packet,
// which must not end the reading: a client's garbage cannot stall the SFU.
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed)
}
