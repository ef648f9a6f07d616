//go:build e2e && cgo

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgeflux/edge/internal/roomclient"
	"github.com/edgeflux/edge/internal/token"
)

// remoteTrack is one received track as the meeting page's window.edge.stats() reports it.
type remoteTrack struct {
	Participant      string   `json:"participant"`
	Track            string   `json:"track"`
	Kind             string   `json:"kind"`
	Codec            string   `json:"codec"`
	FramesDecoded    int      `json:"framesDecoded"`
	FrameWidth       int      `json:"frameWidth"`
	FrameHeight      int      `json:"frameHeight"`
	PacketsReceived  int      `json:"packetsReceived"`
	PacketsLost      int      `json:"packetsLost"`
	KeyFramesDecoded int      `json:"keyFramesDecoded"`
	FreezeCount      int      `json:"freezeCount"`
	PLICount         int      `json:"pliCount"`
	AudioLevel       *float64 `json:"audioLevel"`
}

// pageView is what a meeting page shows: its state, who it sees, its tiles, its stats.
type pageView struct {
	State        string `json:"state"`
	Self         string `json:"self"`
	Participants map[string]struct {
		Name string `json:"name"`
	} `json:"participants"`
	Tiles    []string           `json:"tiles"`
	Speakers []string           `json:"speakers"`
	Spoken   map[string]float64 `json:"spoken"`
	Errors   []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Stats []remoteTrack `json:"stats"`
	// For the failure report: every participant's tracks, and the subscribe connection's
	// mid -> track map.
	Tracks json.RawMessage   `json:"tracks"`
	Mids   map[string]string `json:"mids"`
	Layers json.RawMessage   `json:"layers"` // the layer message per track

	Sent []struct {
		Kind          string   `json:"kind"`
		RID           string   `json:"rid"`
		FramesEncoded int      `json:"framesEncoded"`
		FrameWidth    int      `json:"frameWidth"`
		AudioLevel    *float64 `json:"audioLevel"`
	} `json:"sent"`
}

const readMeetingPage = `(async () => {
	const e = window.edge;
	if (!e || !e.stats) return JSON.stringify({});
	return JSON.stringify({state: e.state, self: e.participantId, participants: e.participants,
		tiles: [...document.querySelectorAll('#grid .tile')].map(t => t.dataset.participant),
		speakers: e.speakers, spoken: e.spoken, errors: e.errors,
		tracks: e.participants, mids: e.room ? e.room.subMids : {},
		layers: e.room ? Object.fromEntries(e.room.layers) : {},
		stats: await e.stats(), sent: await e.publishStats()});
})()`

// received finds what a page receives from one participant.
func (v pageView) received(from, kind string) (remoteTrack, bool) {
	for _, s := range v.Stats {
		if s.Participant == from && s.Kind == kind {
			return s, true
		}
	}
	return remoteTrack{}, false
}

// meetingPage is one Chromium in the meeting.
type meetingPage struct {
	id    string
	ctx   context.Context
	run   func(expr string) (string, error)
	close func()
	last  pageView
}

func (p *meetingPage) read() (pageView, error) {
	raw, err := p.run(readMeetingPage)
	if err != nil {
		return pageView{}, err
	}
	var v pageView
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return pageView{}, fmt.Errorf("%s: %w", p.id, err)
	}
	p.last = v
	return v, nil
}

// meetingToken may publish and subscribe in room main as identity.
func meetingToken(t *testing.T, identity string) string {
	t.Helper()
	now := time.Now()
	tok, err := token.Mint([]byte(testSecret), token.Claims{
		Identity: identity, Name: strings.ToUpper(identity[:1]) + identity[1:], Room: "main",
		Grants:   token.Grants{Publish: true, Subscribe: true},
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// logServer shows what edged logged about participants, tracks and trouble.
func logServer(t *testing.T, d *daemon) {
	for line := range strings.Lines(d.stderr.String()) {
		if strings.Contains(line, "participant") || strings.Contains(line, "track") ||
			strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Log("edged: " + strings.TrimSpace(line))
		}
	}
}

// until polls every page until ok holds for all of them, or fails the test at the deadline
// with what each page last showed.
func until(t *testing.T, pages []*meetingPage, timeout time.Duration, what string, ok func(p *meetingPage, v pageView) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, p := range pages {
			v, err := p.read()
			if err != nil || !ok(p, v) {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range pages {
				t.Logf("%s sees: state %s, participants %s, tiles %v, subscribe mids %v, layers %s, errors %v, received %+v, sent %+v",
					p.id, p.last.State, p.last.Tracks, p.last.Tiles, p.last.Mids, p.last.Layers, p.last.Errors, p.last.Stats, p.last.Sent)
			}
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestE2EMeetingThreeBrowsersAndTheCamera: three Chromiums with fake camera and microphone
// join room main with the appliance camera. Every page decodes video from every other
// participant and the camera and receives the others' audio, checked with getStats; the
// server lists four participants; someone is seen speaking (the fake microphone beeps); when
// one browser closes, the others see it go and the server lists three.
func TestE2EMeetingThreeBrowsersAndTheCamera(t *testing.T) {
	// A 640x360 camera (two layers) and 640x360 at 15 fps from each browser keep three
	// Chromiums and the encoders within two cores.
	d := startDaemon(t, "EDGED_CAMERA_WIDTH=640", "EDGED_CAMERA_HEIGHT=360", "EDGED_CAMERA_FPS=15")
	t.Cleanup(func() {
		if t.Failed() {
			logServer(t, d)
		}
	})
	people := []string{"alice", "bob", "carol"}
	begin := time.Now()
	var pages []*meetingPage
	for _, id := range people {
		ctx, closeBrowser := newBrowser(t,
			chromedp.Flag("use-fake-device-for-media-stream", true),
			chromedp.Flag("use-fake-ui-for-media-stream", true),
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-renderer-backgrounding", true),
		)
		if _, err := chromedp.Run(ctx, chromedp.Navigate(d.url+"/?video=640x360@15#token="+meetingToken(t, id))); err != nil {
			t.Fatal(err)
		}
		pages = append(pages, &meetingPage{id: id, ctx: ctx, close: closeBrowser, run: func(expr string) (string, error) {
			return chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
		}})
	}
	t.Logf("three browsers started and on the page in %v", time.Since(begin).Round(time.Millisecond))

	othersOf := func(self string, ids []string) []string {
		return slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == self })
	}
	spoken := map[string]float64{} // who any page ever saw speaking, and how loud
	noteSpeakers := func(v pageView) {
		for id, level := range v.Spoken {
			spoken[id] = max(spoken[id], level)
		}
	}
	firstFrame := map[string]time.Duration{} // "alice <- bob": first frame decoded, after begin
	decodingAll := func(ids []string) func(p *meetingPage, v pageView) bool {
		return func(p *meetingPage, v pageView) bool {
			noteSpeakers(v)
			if v.State != "live" || v.Self != p.id {
				return false
			}
			all := true
			for _, o := range othersOf(p.id, ids) {
				vid, ok := v.received(o, "video")
				if ok && vid.FramesDecoded > 0 {
					if pair := p.id + " <- " + o; firstFrame[pair] == 0 {
						firstFrame[pair] = time.Since(begin)
					}
				} else {
					all = false
				}
				if o == "camera" {
					continue
				}
				if aud, ok := v.received(o, "audio"); !ok || aud.PacketsReceived == 0 {
					all = false
				}
			}
			return all
		}
	}
	everyone := append([]string{"camera"}, people...)
	until(t, pages, 45*time.Second, "every page decoding video from everyone and receiving audio from every browser", decodingAll(everyone))
	allDecoding := time.Since(begin)
	t.Logf("every page decodes everyone %v after the first browser started", allDecoding.Round(time.Millisecond))
	pairs := slices.Sorted(maps.Keys(firstFrame))
	for _, pair := range pairs {
		t.Logf("first frame %-15s %v", pair, firstFrame[pair].Round(10*time.Millisecond))
	}

	// Growing, not just started: every counter moves on. A counter that goes back starts over
	// from there: a page that rejoined (it does so by itself when the server ends its
	// session) has new connections; that is logged below, not hidden.
	base := map[string]int{} // "alice <- bob video": the count to grow from
	grown := func(key string, n, by int) bool {
		b, seen := base[key]
		if !seen || n < b {
			base[key] = n
			return false
		}
		return n >= b+by
	}
	growing := func(p *meetingPage, v pageView) bool {
		noteSpeakers(v)
		all := true
		for _, o := range othersOf(p.id, everyone) {
			vid, _ := v.received(o, "video")
			all = grown(p.id+" <- "+o+" video", vid.FramesDecoded, 10) && all
			if o != "camera" {
				aud, _ := v.received(o, "audio")
				all = grown(p.id+" <- "+o+" audio", aud.PacketsReceived, 25) && all
			}
		}
		return all
	}
	for _, p := range pages {
		growing(p, p.last)
	}
	sampled := time.Now()
	until(t, pages, 30*time.Second, "every video and audio counter growing", growing)
	t.Logf("counters grew within %v", time.Since(sampled).Round(time.Millisecond))
	for _, p := range pages {
		for _, e := range p.last.Errors {
			t.Logf("NOTE: %s's page reported %q (code %d); it rejoins by itself when its session ends", p.id, e.Message, e.Code)
		}
	}
	if got := roomParticipants(t, d); !slices.Equal(got, []string{"alice", "bob", "camera", "carol"}) {
		t.Errorf("/api/rooms lists %v in room main; want alice, bob, camera and carol", got)
	}
	// Chromium negotiates transport-wide congestion control: the SFU's own estimate of
	// each page's downlink, from its feedback, steers what it receives.
	downlinks := roomDownlinks(t, d)
	if len(downlinks) != 3 {
		t.Errorf("/api/rooms shows the downlinks of %v; want alice, bob and carol", downlinks)
	}
	for id, dl := range downlinks {
		t.Logf("%s's downlink: %+v", id, dl)
		if dl.Congestion != "transport-cc" || dl.EstimateKbps <= 0 || dl.RTTMs <= 0 {
			t.Errorf("%s's downlink as the SFU sees it: %+v; want a transport-cc estimate and round trip", id, dl)
		}
	}

	// Active speaker: the fake microphone beeps; someone must be named at some point.
	deadline := time.Now().Add(10 * time.Second)
	for len(spoken) == 0 && time.Now().Before(deadline) {
		for _, p := range pages {
			if v, err := p.read(); err == nil {
				noteSpeakers(v)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(spoken) == 0 {
		for _, p := range pages {
			for _, s := range p.last.Sent {
				if s.Kind == "audio" && s.AudioLevel != nil {
					t.Logf("%s's microphone level (0..1, as Chromium measures it): %.3f", p.id, *s.AudioLevel)
				}
			}
		}
		t.Error("no page was ever told of an active speaker, although every fake microphone beeps")
	} else {
		t.Logf("active speakers seen (highest level): %v", spoken)
	}

	// Alice mutes her microphone with the page's button: Bob's page shows it on her tile.
	alice, bob := pages[0], pages[1]
	micFlag := func(p *meetingPage, who string) (bool, bool) {
		raw, err := p.run(`(() => {
			const t = (window.edge.participants['` + who + `'] || {tracks: []}).tracks.find(t => t.kind === 'audio');
			const flag = document.querySelector('[data-participant="` + who + `"] .mic-off');
			return JSON.stringify([!!(t && t.muted), !!flag && !flag.hidden]);
		})()`)
		var got [2]bool
		if err != nil || json.Unmarshal([]byte(raw), &got) != nil {
			return false, false
		}
		return got[0], got[1]
	}
	for _, muted := range []bool{true, false} {
		if _, err := alice.run(`(document.querySelector('#mic').click(), 'ok')`); err != nil {
			t.Fatal(err)
		}
		until(t, []*meetingPage{bob}, 10*time.Second, fmt.Sprintf("bob sees alice's microphone muted=%v", muted), func(p *meetingPage, _ pageView) bool {
			track, shown := micFlag(p, "alice")
			return track == muted && shown == muted
		})
	}

	// Bob picks the low quality for the camera: he gets its smallest layer.
	if _, err := bob.run(`(() => { const s = document.querySelector('[data-participant="camera"] .quality');
		s.value = 'low'; s.dispatchEvent(new Event('change')); return 'ok'; })()`); err != nil {
		t.Fatal(err)
	}
	until(t, []*meetingPage{bob}, 10*time.Second, "bob receiving the camera's low layer", func(p *meetingPage, v pageView) bool {
		cam, _ := v.received("camera", "video")
		return cam.FrameWidth == 320
	})

	logPairs := func() {
		t.Logf("what each page received, %v after the first browser started:", time.Since(begin).Round(time.Millisecond))
		for _, p := range pages {
			if _, err := p.read(); err != nil {
				t.Fatal(err)
			}
			for _, o := range othersOf(p.id, everyone) {
				vid, _ := p.last.received(o, "video")
				line := fmt.Sprintf("%s <- %-6s video %s %dx%d, %d frames decoded (%d keyframes, %d freezes, %d PLIs, %d lost)",
					p.id, o, vid.Codec, vid.FrameWidth, vid.FrameHeight, vid.FramesDecoded, vid.KeyFramesDecoded, vid.FreezeCount, vid.PLICount, vid.PacketsLost)
				if aud, ok := p.last.received(o, "audio"); ok {
					line += fmt.Sprintf("; audio %d packets", aud.PacketsReceived)
				}
				t.Log(line)
			}
		}
	}
	logPairs()
	screenshot(t, alice.ctx, "meeting-alice")

	// Carol closes her browser; Alice and Bob see her go.
	carol := pages[2]
	carol.close()
	left := time.Now()
	until(t, pages[:2], 15*time.Second, "carol gone from the other pages", func(p *meetingPage, v pageView) bool {
		_, listed := v.Participants["carol"]
		return !listed && !slices.Contains(v.Tiles, "carol")
	})
	t.Logf("carol's leaving reached the other pages in %v", time.Since(left).Round(time.Millisecond))
	screenshot(t, bob.ctx, "meeting-bob-after-carol-left")
	if got := roomParticipants(t, d); !slices.Equal(got, []string{"alice", "bob", "camera"}) {
		t.Errorf("/api/rooms lists %v after carol left; want alice, bob and camera", got)
	}
	// The two who stay still decode each other and the camera.
	until(t, pages[:2], 10*time.Second, "alice and bob still decoding", decodingAll([]string{"camera", "alice", "bob"}))
	t.Logf("whole meeting test %v", time.Since(begin).Round(time.Millisecond))
}

// TestE2EMeetingPageReconnectsButNotWhenReplaced: a view-only page whose WebSocket drops
// joins again by itself and plays the camera again; a page whose identity is taken by another
// session (a reload elsewhere) says so and stays out until asked to join again.
func TestE2EMeetingPageReconnectsButNotWhenReplaced(t *testing.T) {
	d := startDaemon(t, "EDGED_CAMERA_WIDTH=640", "EDGED_CAMERA_HEIGHT=360", "EDGED_CAMERA_FPS=15")
	ctx := browser(t) // no camera or microphone: view only
	tok := meetingToken(t, "dave")
	if _, err := chromedp.Run(ctx, chromedp.Navigate(d.url+"/?publish=0#token="+tok)); err != nil {
		t.Fatal(err)
	}
	page := &meetingPage{id: "dave", ctx: ctx, run: func(expr string) (string, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	}}
	pages := []*meetingPage{page}
	decodingCamera := func(_ *meetingPage, v pageView) bool {
		cam, ok := v.received("camera", "video")
		return v.State == "live" && ok && cam.FramesDecoded > 0
	}
	until(t, pages, 20*time.Second, "dave decoding the camera", decodingCamera)

	// The socket drops: the page joins again on a new subscribe connection.
	if _, err := page.run(`(window.edge.sub.old = true, window.edge.room.ws.close(4000, 'test'), 'ok')`); err != nil {
		t.Fatal(err)
	}
	dropped := time.Now()
	until(t, pages, 20*time.Second, "dave back and decoding the camera on a new connection", func(p *meetingPage, v pageView) bool {
		raw, err := p.run(`String(!!window.edge.sub && !window.edge.sub.old)`)
		return err == nil && raw == "true" && decodingCamera(p, v)
	})
	t.Logf("the page was back and decoding %v after its socket dropped", time.Since(dropped).Round(time.Millisecond))

	// Another session as dave replaces the page's.
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := roomclient.Dial(rctx, roomclient.Options{URL: "ws" + strings.TrimPrefix(d.url, "http") + "/rtc", Token: tok, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	readBanner := func() string {
		raw, _ := page.run(`document.querySelector('#banner').hidden ? '' : document.querySelector('#banner-text').textContent`)
		return raw
	}
	until(t, pages, 10*time.Second, "the page saying it was replaced", func(_ *meetingPage, v pageView) bool {
		return v.State == "left" && strings.Contains(readBanner(), "another tab")
	})
	// Nothing to wait for here: the page must not do something. Its first retry would come
	// within 1.25 s; give it 3 s.
	time.Sleep(3 * time.Second)
	if v, err := page.read(); err != nil || v.State != "left" {
		t.Errorf("page state %q (%v) 3 s after it was replaced; want it to stay left", v.State, err)
	}
	for _, m := range other.Messages() {
		if m.Type() == "leave" {
			t.Fatalf("the replaced page took its identity back by itself: the other session got %v", m)
		}
	}

	// Join again, by hand: the page is back, and the other session is the one replaced.
	if _, err := page.run(`(document.querySelector('#rejoin').click(), 'ok')`); err != nil {
		t.Fatal(err)
	}
	until(t, pages, 20*time.Second, "dave back after Join again", decodingCamera)
	if _, err := other.Wait(rctx, func(m roomclient.Message) bool { return m.Type() == "leave" && m["reason"] == "replaced" }); err != nil {
		t.Errorf("the other session was not replaced when the page joined again: %v", err)
	}
}
