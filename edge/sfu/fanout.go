package sfu

import (
	"runtime"
	"sync"
)

// A packet's forward to one subscriber costs a few microseconds (the down track's rewrite,
// SRTP, the socket queue). At hundreds of subscribers one goroutine would hold the last of
// them a millisecond or more after the packet came, so a layer with many subscribers hands
// slices of them to fan-out workers, one per CPU, and forwards the first slice itself. It
// waits for all slices before the next packet: every subscriber still gets the layer's
// packets in order, and the ring slot stays valid while it is read.

// fanoutSlice is how many subscribers one goroutine forwards a packet to before another
// helps: below it, handing over costs more than it saves.
const fanoutSlice = 64

type fanoutTask struct {
	l    *Layer
	p    *packet
	subs []*DownTrack
	done *sync.WaitGroup
}

var (
	fanoutOnce  sync.Once
	fanoutTasks chan fanoutTask
	fanoutCPUs  = runtime.GOMAXPROCS(0)
)

func startFanoutWorkers() {
	fanoutTasks = make(chan fanoutTask, 4*fanoutCPUs)
	for range fanoutCPUs {
		go func() {
			for t := range fanoutTasks {
				for _, s := range t.subs {
					s.forward(t.l, t.p)
				}
				t.done.Done()
			}
		}()
	}
}

// fanout forwards p to subs, in slices on several CPUs when there are many.
func (l *Layer) fanout(subs []*DownTrack, p *packet) {
	parts := min(fanoutCPUs, (len(subs)+fanoutSlice-1)/fanoutSlice)
	if parts <= 1 {
		for _, s := range subs {
			s.forward(l, p)
		}
		return
	}
	fanoutOnce.Do(startFanoutWorkers)
	size := (len(subs) + parts - 1) / parts
	l.fanoutDone.Add(parts - 1)
	for start := size; start < len(subs); start += size {
		fanoutTasks <- fanoutTask{l: l, p: p, subs: subs[start:min(start+size, len(subs))], done: &l.fanoutDone}
	}
	for _, s := range subs[:size] {
		s.forward(l, p)
	}
	l.fanoutDone.Wait()
}
