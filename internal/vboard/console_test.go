package vboard

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestResults(t *testing.T) {
	for _, c := range []struct {
		name    string
		console string
		want    []Result
		done    bool
	}{
		{
			name: "two steps and done",
			console: "[ 0.1] boot\nVBOARD-BEGIN device/camera\n=== RUN TestVBoardX\nPASS\nVBOARD-END device/camera rc=0\n" +
				"VBOARD-BEGIN device/gpio\n--- FAIL: TestVBoardY\nVBOARD-END device/gpio rc=1\nVBOARD-DONE\n",
			want: []Result{
				{Name: "device/camera", Ended: true, RC: 0, Output: "=== RUN TestVBoardX\nPASS"},
				{Name: "device/gpio", Ended: true, RC: 1, Output: "--- FAIL: TestVBoardY"},
			},
			done: true,
		},
		{
			name:    "a hang: no END, no DONE",
			console: "VBOARD-BEGIN device/camera\n=== RUN TestVBoardX\n",
			want:    []Result{{Name: "device/camera", Output: "=== RUN TestVBoardX"}},
		},
		{
			name:    "a kernel message glued before a marker, CR LF line ends",
			console: "VBOARD-BEGIN a\r\n[ 3.2] oops VBOARD-END a rc=2\r\nVBOARD-DONE\r\n",
			want:    []Result{{Name: "a", Ended: true, RC: 2}},
			done:    true,
		},
		{
			name:    "an END of another step does not end this one",
			console: "VBOARD-BEGIN a\nVBOARD-END b rc=0\nVBOARD-BEGIN b\n",
			want:    []Result{{Name: "a", Output: "VBOARD-END b rc=0"}, {Name: "b"}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			con := newConsole(nil)
			con.Write([]byte(c.console))
			con.close()
			got, done := Results(con.snapshot())
			if done != c.done {
				t.Errorf("done = %v, want %v", done, c.done)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("result %d = %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestConsoleWaitFor(t *testing.T) {
	var log strings.Builder
	con := newConsole(&log)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	errs := make(chan error)
	go func() { errs <- con.waitFor(ctx, MarkerReadyForButton, 2) }()
	con.Write([]byte("VBOARD-READY-FOR-BUTTON\nVBOARD-READY-FOR"))
	select {
	case err := <-errs:
		t.Fatalf("waitFor returned %v after one marker and a half", err)
	case <-time.After(50 * time.Millisecond):
	}
	con.Write([]byte("-BUTTON\n"))
	if err := <-errs; err != nil {
		t.Fatalf("waitFor: %v", err)
	}
	con.close()
	if err := con.waitFor(ctx, MarkerReadyForButton, 3); !errors.Is(err, ErrExited) {
		t.Fatalf("waitFor after the end = %v, want ErrExited", err)
	}
	if log.String() != "VBOARD-READY-FOR-BUTTON\nVBOARD-READY-FOR-BUTTON\n" {
		t.Errorf("log = %q", log.String())
	}
}
