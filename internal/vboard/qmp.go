package vboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of the QEMU Machine Protocol: JSON objects over a unix socket. After the
// greeting it negotiates capabilities; then each command gets one reply, and asynchronous
// events in between are skipped.
type QMP struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex // one command at a time
}

// DialQMP connects to QEMU's QMP socket and leaves command mode on (qmp_capabilities).
func DialQMP(ctx context.Context, socket string) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	q.deadline(ctx)
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		if err == nil {
			err = errors.New("no greeting")
		}
		return nil, fmt.Errorf("qmp: greeting: %w", err)
	}
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// dialQMPWhileRunning retries DialQMP until QEMU has created the socket, for up to 30 s or
// until QEMU exits.
func dialQMPWhileRunning(ctx context.Context, socket string, exited <-chan struct{}) (*QMP, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		q, err := DialQMP(ctx, socket)
		if err == nil {
			return q, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("qmp: %w before its socket opened", ErrExited)
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// QMPError is an error reply from QEMU.
type QMPError struct {
	Command string
	Class   string
	Desc    string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp: %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Execute runs one command, with arguments when args is not nil, and returns its "return"
// value. An error reply is a *QMPError.
func (q *QMP) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deadline(ctx)
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", command, err)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", command, err)
	}
	for {
		var reply struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.read(&reply); err != nil {
			return nil, fmt.Errorf("qmp: %s: %w", command, err)
		}
		switch {
		case reply.Error != nil:
			return nil, &QMPError{Command: command, Class: reply.Error.Class, Desc: reply.Error.Desc}
		case reply.Return != nil:
			return reply.Return, nil
		}
		// An event (reply.Event): not the answer.
	}
}

// Close closes the connection.
func (q *QMP) Close() error {
	return q.conn.Close()
}

func (q *QMP) deadline(ctx context.Context) {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(30 * time.Second)
	}
	q.conn.SetDeadline(d)
}

// read decodes the next JSON object, one per line.
func (q *QMP) read(v any) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}
