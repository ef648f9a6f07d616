// Package sdnotify tells systemd how the daemon is doing (sd_notify(3): READY, STATUS,
// STOPPING) and pings the service watchdog only while the daemon is healthy, so a stalled
// pipeline gets the service restarted. Outside systemd every call is a no-op.
package sdnotify

import (
	"context"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready says start-up is complete.
func Ready(status string) { notify(daemon.SdNotifyReady + "\nSTATUS=" + status) }

// Status sets the one-line status `systemctl status` shows.
func Status(status string) { notify("STATUS=" + status) }

// Stopping says shutdown has begun.
func Stopping() { notify(daemon.SdNotifyStopping) }

// Reloading tells systemd a configuration reload began; Ready ends it.
func Reloading() { notify(daemon.SdNotifyReloading) }

func notify(state string) { _, _ = daemon.SdNotify(false, state) }

// Watchdog pings systemd's watchdog at a third of its interval for as long as healthy says
// so, until ctx is done. It returns at once when the unit has no WatchdogSec.
// healthy is asked before every ping; why is logged once when health is lost.
func Watchdog(ctx context.Context, log *slog.Logger, healthy func() (ok bool, why string)) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 3)
	defer tick.Stop()
	wasHealthy := true
	for {
		ok, why := healthy()
		if ok {
			notify(daemon.SdNotifyWatchdog)
		} else if wasHealthy {
			log.Error("not pinging the watchdog; systemd will restart edged unless media resumes",
				"reason", why, "watchdog", interval)
		}
		wasHealthy = ok
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
