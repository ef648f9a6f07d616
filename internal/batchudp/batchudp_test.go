package batchudp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/edgeflux/edge/internal/cpustat"
)

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEveryDatagramArrivesIntact: datagrams from several writers all arrive, whole and in
// each writer's order, in fewer system calls than datagrams.
func TestEveryDatagramArrivesIntact(t *testing.T) {
	recv := listen(t)
	dst := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	c := New(listen(t))
	defer c.Close()

	const writers, each = 4, 500
	got := make(chan []byte, writers*each)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := recv.Read(buf)
			if err != nil {
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			pkt := make([]byte, 1200)
			for i := range each {
				binary.BigEndian.PutUint32(pkt, uint32(w))
				binary.BigEndian.PutUint32(pkt[4:], uint32(i))
				pkt[1199] = byte(i)
				if _, err := c.WriteToAddrPort(pkt, dst); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 49 {
					time.Sleep(time.Millisecond) // let the receiver keep up: loopback drops when its buffer fills
				}
			}
		})
	}
	wg.Wait()
	next := make([]uint32, writers)
	for range writers * each {
		select {
		case p := <-got:
			w, i := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
			if len(p) != 1200 || p[1199] != byte(i) || w >= writers {
				t.Fatalf("datagram %d/%d damaged: %d bytes", w, i, len(p))
			}
			if i != next[w] {
				t.Fatalf("writer %d: datagram %d after %d", w, i, next[w])
			}
			next[w]++
		case <-time.After(5 * time.Second):
			t.Fatalf("received %v of %d per writer", next, each)
		}
	}
	if b, d := c.Batches.Load(), c.Datagrams.Load(); d != writers*each || b >= d {
		t.Errorf("%d datagrams in %d system calls; want all %d in fewer calls", d, b, writers*each)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	c := New(listen(t))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); err == nil {
		t.Error("write after Close succeeded")
	}
}

// BenchmarkFanout sends one 1200-byte packet to each of 100 viewers per round, as an SFU
// does, through a plain socket and through the batching one, and reports CPU per datagram
// (the sender's whole process: the writer and, for batches, its sender goroutine).
func BenchmarkFanout(b *testing.B) {
	const viewers = 100
	var dsts []netip.AddrPort
	for range viewers {
		// Nobody reads: the receivers' cost stays out of the measurement (a full socket
		// buffer makes the kernel drop, after the sender's work is done).
		r := listen(b)
		dsts = append(dsts, r.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	pkt := make([]byte, 1200)
	for _, mode := range []string{"plain", "batched"} {
		b.Run(mode, func(b *testing.B) {
			raw := listen(b)
			write := func(p []byte, a netip.AddrPort) { _, _ = raw.WriteToUDPAddrPort(p, a) }
			var c *Conn
			if mode == "batched" {
				c = New(raw)
				defer c.Close()
				write = func(p []byte, a netip.AddrPort) { _, _ = c.WriteToAddrPort(p, a) }
			}
			cpu0 := cpustat.Process()
			b.ResetTimer()
			for b.Loop() {
				for _, d := range dsts {
					write(pkt, d)
				}
			}
			if c != nil {
				c.flush()
			}
			b.StopTimer()
			perDatagram := float64((cpustat.Process() - cpu0).Nanoseconds()) / float64(b.N*viewers)
			b.ReportMetric(perDatagram, "cpu-ns/datagram")
			if c != nil {
				b.ReportMetric(float64(c.Datagrams.Load())/float64(max(1, c.Batches.Load())), "datagrams/syscall")
			}
		})
	}
}
