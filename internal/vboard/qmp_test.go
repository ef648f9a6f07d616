package vboard

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"testing"
)

// fakeQEMU answers QMP on a unix socket: the greeting, then each command from replies in
// turn, with an event before each reply to show that events are skipped.
func fakeQEMU(t *testing.T, replies map[string]string) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(`{"QMP": {"version": {}, "capabilities": ["oob"]}}` + "\n"))
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req struct{ Execute string }
			if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
				t.Errorf("fake QEMU got %q: %v", sc.Text(), err)
				return
			}
			reply, ok := replies[req.Execute]
			if !ok {
				reply = `{"error": {"class": "CommandNotFound", "desc": "The command ` + req.Execute + ` has not been found"}}`
			}
			conn.Write([]byte(`{"event": "POWERDOWN", "timestamp": {"seconds": 1, "microseconds": 2}}` + "\n" + reply + "\n"))
		}
	}()
	return socket
}

func TestQMP(t *testing.T) {
	socket := fakeQEMU(t, map[string]string{
		"qmp_capabilities": `{"return": {}}`,
		"system_powerdown": `{"return": {}}`,
		"query-status":     `{"return": {"status": "running", "running": true}}`,
	})
	q, err := DialQMP(t.Context(), socket)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Execute(t.Context(), "system_powerdown", nil); err != nil {
		t.Fatalf("system_powerdown: %v", err)
	}
	ret, err := q.Execute(t.Context(), "query-status", nil)
	if err != nil {
		t.Fatalf("query-status: %v", err)
	}
	var status struct{ Status string }
	if err := json.Unmarshal(ret, &status); err != nil || status.Status != "running" {
		t.Fatalf("query-status returned %s (%v)", ret, err)
	}
	_, err = q.Execute(t.Context(), "no-such-command", map[string]any{"x": 1})
	var qerr *QMPError
	if !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
		t.Fatalf("unknown command: %v, want a *QMPError of class CommandNotFound", err)
	}
}
