package sdnotify

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listen stands in for systemd: a datagram socket at NOTIFY_SOCKET collecting messages.
func listen(t *testing.T) (msgs func() []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(buf[:n]))
			mu.Unlock()
		}
	})
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func count(msgs []string, what string) (n int) {
	for _, m := range msgs {
		if strings.Contains(m, what) {
			n++
		}
	}
	return n
}

func TestStateMessages(t *testing.T) {
	msgs := listen(t)
	Ready("streaming")
	Status("streaming 1280x720")
	Stopping()
	time.Sleep(50 * time.Millisecond)
	got := msgs()
	want := []string{"READY=1\nSTATUS=streaming", "STATUS=streaming 1280x720", "STOPPING=1"}
	if len(got) != len(want) {
		t.Fatalf("got %q; want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: %q; want %q", i, got[i], want[i])
		}
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	msgs := listen(t)
	t.Setenv("WATCHDOG_USEC", strconv.Itoa(int((150 * time.Millisecond).Microseconds())))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Watchdog(ctx, slog.New(slog.DiscardHandler), func() (bool, string) { return healthy.Load(), "stalled" })
		close(done)
	}()

	time.Sleep(500 * time.Millisecond)
	flowing := count(msgs(), "WATCHDOG=1")
	healthy.Store(false) // the source stalls
	time.Sleep(60 * time.Millisecond)
	atStall := count(msgs(), "WATCHDOG=1")
	time.Sleep(500 * time.Millisecond)
	stalled := count(msgs(), "WATCHDOG=1") - atStall
	healthy.Store(true)
	time.Sleep(300 * time.Millisecond)
	resumed := count(msgs(), "WATCHDOG=1") - atStall - stalled
	cancel()
	<-done

	// Pings every 50 ms while healthy: about 10 in 500 ms.
	if flowing < 6 {
		t.Errorf("%d pings in 500 ms of flowing media; want about 10", flowing)
	}
	if stalled != 0 {
		t.Errorf("%d pings while the media was stalled; want none, so systemd restarts the service", stalled)
	}
	if resumed < 3 {
		t.Errorf("%d pings after the media resumed; want about 6", resumed)
	}
}

func TestWatchdogOffWithoutWatchdogSec(t *testing.T) {
	listen(t)
	t.Setenv("WATCHDOG_USEC", "")
	done := make(chan struct{})
	go func() {
		Watchdog(context.Background(), slog.New(slog.DiscardHandler), func() (bool, string) { return true, "" })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Watchdog kept running for a unit without WatchdogSec")
	}
}
