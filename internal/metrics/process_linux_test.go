package metrics

import (
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; fields from proc(5).
	line := "4242 (edged (worker) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 125 0 0 20 0 12 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{utime: 250, stime: 125, starttime: 98765, vsize: 123456789, rssPages: 2048}
	if st != want {
		t.Fatalf("parseStat = %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "4242 edged S 1", "4242 (edged) S 1 2 3", strings.Replace(line, "250", "x", 1)} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}
