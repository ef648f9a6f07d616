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
	"github.com/edgeflux/edge/edge/sfu/bwe"
)

// audioShare is what each audio track is assumed to take of a subscriber's bandwidth.
const audioShare = 40_000

// The send-side estimate of a subscriber's connection starts where the camera's top layer
// fits (a room's local network usually carries it; a slower link is found within a second
// or two) and stays within these bounds.
const (
	bweInitial = 2_500_000
	bweMin     = 100_000
	bweMax     = 50_000_000
)

// subscriber sends room tracks down one peer connection: a meeting client's subscribe
// connection or a WHEP session. It owns the connection's down tracks, answers their RTCP and
// shares the connection's bandwidth estimate among them. The estimate comes from the
// SFU's own send-side estimator when the subscriber negotiated transport-wide congestion
// control (browsers do), or from the subscriber's REMB where that is all it offers.
type subscriber struct {
	srv *Server
	id  string
	pc  *webrtc.PeerConnection
	// onLayer is told when a down track's forwarded layer changes (may be nil).
	onLayer func(d *sfu.DownTrack, l *sfu.Layer)

	mu        sync.Mutex
	downs     map[string]*downEntry // by track id
	estimate  int                   // latest estimate for the connection, bit/s; 0 = none yet
	allocated int                   // estimate at the last allocation
	remb      bool                  // the subscriber sends REMB
	transport *bwe.Estimator        // used by down tracks that negotiated transport-wide feedback
	done      chan struct{}
	doneOnce  sync.Once
}

type downEntry struct {
	down   *sfu.DownTrack
	sender *webrtc.RTPSender
}

func newSubscriber(srv *Server, id string, pc *webrtc.PeerConnection) *subscriber {
	s := &subscriber{srv: srv, id: id, pc: pc, downs: map[string]*downEntry{}, done: make(chan struct{}),
		transport: bwe.New(bweInitial, bweMin, bweMax)}
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
	added := time.Now()
	var first sync.Once
	d = sfu.NewDownTrack(t, s.id, func(l *sfu.Layer) {
		first.Do(func() { s.srv.metrics.firstMedia.Observe(time.Since(added).Seconds()) })
		s.srv.metrics.layerSwitches.Add(1)
		if s.onLayer != nil {
			s.onLayer(d, l)
		}
	})
	d.UseTransportCC(s.transport)
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
		d.HandleRTCP(pkts) // transport-wide feedback goes to the estimator there
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				s.setEstimate(int(p.Bitrate), true)
			case *rtcp.TransportLayerCC:
				s.setEstimate(s.transport.Estimate(), false)
			}
		}
	}
}

// setEstimate takes a new estimate for the connection: the subscriber's REMB, shared out at
// once, or the SFU's own from transport-wide feedback, shared out at once when it fell or
// grew by a tenth (that feedback comes ten or twenty times a second; smaller changes wait for
// the next tick).
func (s *subscriber) setEstimate(bps int, fromREMB bool) {
	s.mu.Lock()
	s.estimate = bps
	s.remb = s.remb || fromREMB
	last := s.allocated
	s.mu.Unlock()
	if fromREMB || last == 0 || bps < last || bps > last+last/10 {
		s.allocate()
	}
}

// allocate shares the connection's estimate among its tracks: audio first, the rest
// equally among the video tracks, and lets each choose its layer.
func (s *subscriber) allocate() {
	s.mu.Lock()
	estimate := s.estimate
	s.allocated = estimate
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

// SubscriberStatus is what a subscriber's connection receives and how the SFU sees its link.
type SubscriberStatus struct {
	// Congestion is the source of the estimate: "transport-cc" (the SFU's own send-side
	// estimate from the subscriber's transport-wide feedback), "remb" (the subscriber's), or
	// "" before either.
	Congestion   string            `json:"congestion"`
	EstimateKbps int               `json:"estimate_kbps"`
	RTTMs        float64           `json:"rtt_ms,omitempty"`        // transport-cc only
	Delay        string            `json:"delay,omitempty"`         // transport-cc: normal, overusing or underusing
	AckedKbps    int               `json:"acked_kbps,omitempty"`    // transport-cc: what arrived over the last 500 ms
	LinkLossPct  float64           `json:"link_loss_pct,omitempty"` // transport-cc: of every packet sent, padding included
	Tracks       []DownTrackStatus `json:"tracks"`
}

// DownTrackStatus is one track a subscriber receives.
type DownTrackStatus struct {
	Track   string  `json:"track"`
	Layer   string  `json:"layer"` // quality being forwarded; "" before the first keyframe
	LossPct float64 `json:"loss_pct"`
	Packets uint64  `json:"packets"`
	Padding uint64  `json:"padding"`           // RTX copies sent to probe the link
	Probing string  `json:"probing,omitempty"` // the layer a padding probe is trying now
}

func (s *subscriber) status() SubscriberStatus {
	s.mu.Lock()
	st := SubscriberStatus{EstimateKbps: s.estimate / 1000, Tracks: []DownTrackStatus{}}
	remb := s.remb
	s.mu.Unlock()
	twcc := false
	for _, d := range s.all() {
		ds := DownTrackStatus{Track: d.Track().ID, LossPct: d.Loss() * 100, Packets: d.PacketsSent.Load(), Padding: d.Padding.Load()}
		if l := d.Probing(); l != nil {
			ds.Probing = l.Quality.String()
		}
		if l := d.Layer(); l != nil {
			ds.Layer = l.Quality.String()
		}
		twcc = twcc || d.TransportCC()
		st.Tracks = append(st.Tracks, ds)
	}
	switch {
	case twcc:
		bs := s.transport.Stats()
		st.Congestion, st.Delay = "transport-cc", bs.State.String()
		st.RTTMs = float64(bs.RTT.Microseconds()) / 1000
		st.AckedKbps, st.LinkLossPct = bs.Acked/1000, bs.LossFraction*100
	case remb:
		st.Congestion = "remb"
	}
	return st
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
