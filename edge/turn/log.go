package turn

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
)

// pionLogger sends pion/turn's log lines to slog. Trace is dropped; pion's Error lines are
// about single clients (bad packets, failed auth), so they are logged as warnings.
// Lines at Info and above are limited to logBurst per second across all scopes (they come
// from the packet path: one bad client could otherwise flood the journal); the number
// suppressed is logged with the next line let through.
type pionLogger struct {
	l   *slog.Logger
	lim *logLimiter
}

func newPionLogger(l *slog.Logger) pionLogger { return pionLogger{l, &logLimiter{}} }

func (f pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.l.With("scope", scope), f.lim}
}

const logBurst = 10

type logLimiter struct {
	mute       atomic.Bool // set by Server.Close
	mu         sync.Mutex
	second     int64
	n          int
	suppressed int
}

// allow reports whether to log now, and how many lines were suppressed before.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	if l.n >= logBurst {
		l.suppressed++
		return false, 0
	}
	l.n++
	dropped := l.suppressed
	l.suppressed = 0
	return true, dropped
}

func (p pionLogger) log(level slog.Level, msg string) {
	if p.lim.mute.Load() || !p.l.Enabled(context.Background(), level) {
		return
	}
	if level >= slog.LevelInfo {
		ok, dropped := p.lim.allow(time.Now())
		if !ok {
			return
		}
		if dropped > 0 {
			p.l.Log(context.Background(), level, msg, "suppressed_before", dropped)
			return
		}
	}
	p.l.Log(context.Background(), level, msg)
}

func (p pionLogger) Trace(string)          {}
func (p pionLogger) Tracef(string, ...any) {}
func (p pionLogger) Debug(msg string)      { p.log(slog.LevelDebug, msg) }
func (p pionLogger) Debugf(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.log(slog.LevelDebug, fmt.Sprintf(format, args...))
	}
}
func (p pionLogger) Info(msg string) { p.log(slog.LevelInfo, msg) }
func (p pionLogger) Infof(format string, args ...any) {
	p.log(slog.LevelInfo, fmt.Sprintf(format, args...))
}
func (p pionLogger) Warn(msg string) { p.log(slog.LevelWarn, msg) }
func (p pionLogger) Warnf(format string, args ...any) {
	p.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (p pionLogger) Error(msg string) { p.log(slog.LevelWarn, msg) }
func (p pionLogger) Errorf(format string, args ...any) {
	p.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
