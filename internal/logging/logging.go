// Package logging builds the daemon's slog logger: readable text on a terminal, and lines
// that journald files under the right priority when running under systemd.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
)

// New returns a logger writing to w. format is "text", "json", "journal", or "auto": journal
// when stderr is connected to the journal (systemd sets JOURNAL_STREAM), text otherwise.
func New(w io.Writer, level, format string, environ []string) (*slog.Logger, error) {
	lv := new(slog.LevelVar)
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return NewLeveled(w, lv, format, environ)
}

// NewLeveled is New with a level that can change while the logger is in use (a reload).
func NewLeveled(w io.Writer, lv *slog.LevelVar, format string, environ []string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "text"
		for _, kv := range environ {
			if len(kv) > len("JOURNAL_STREAM=") && kv[:len("JOURNAL_STREAM=")] == "JOURNAL_STREAM=" {
				format = "journal"
			}
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "journal":
		pw := &priorityWriter{w: w}
		// journald stamps each line itself; a second timestamp is noise.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		}
		return slog.New(&journalHandler{Handler: slog.NewTextHandler(pw, opts), pw: pw}), nil
	default:
		return nil, fmt.Errorf("log format %q: use auto, text, json or journal", format)
	}
}

// journalHandler prefixes each line with its syslog priority, "<3>" for errors and so on,
// which journald parses from a service's stderr (sd-daemon(3)).
type journalHandler struct {
	slog.Handler
	pw *priorityWriter
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = priority(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &journalHandler{Handler: h.Handler.WithAttrs(attrs), pw: h.pw}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{Handler: h.Handler.WithGroup(name), pw: h.pw}
}

// priorityWriter writes one record per Write (slog's text handler does) with a prefix set
// under mu by the handler.
type priorityWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], p.prefix...), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

func priority(l slog.Level) string {
	n := 6 // info
	switch {
	case l >= slog.LevelError:
		n = 3
	case l >= slog.LevelWarn:
		n = 4
	case l < slog.LevelInfo:
		n = 7
	}
	return "<" + strconv.Itoa(n) + ">"
}
