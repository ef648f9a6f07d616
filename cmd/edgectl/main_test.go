package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	tests := []struct {
		args []string
		err  string
		out  string
	}{
		{nil, "", "commands:"},
		{[]string{"help"}, "", "claim"},
		{[]string{"nope"}, `unknown command "nope"`, ""},
		{[]string{"devices"}, "give one of", ""},
		{[]string{"devices", "frobnicate"}, "unknown", ""},
		{[]string{"devices", "show"}, "want 1 argument", ""},
		{[]string{"devices", "list", "-server", ""}, "no server", ""},
		{[]string{"claim", "create", "-h"}, "", ""},
		{[]string{"token", "-h"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("EDGECTL_SERVER", "")
			var out, errb bytes.Buffer
			err := run(tt.args, &out, &errb)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("run: %v, want %q", err, tt.err)
			}
			if !strings.Contains(out.String(), tt.out) {
				t.Fatalf("output %q lacks %q", out.String(), tt.out)
			}
		})
	}
	for name := range commands {
		if !strings.Contains(func() string { var b bytes.Buffer; usage(&b); return b.String() }(), name) {
			t.Errorf("usage does not list %s", name)
		}
	}
}
