package server

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	tmpl := "# the lab's template\nversion: 1\ncamera:\n  device: synthetic\n  fps: 30\nencoder:\n  bitrate_kbps: 2000\n"
	tests := []struct {
		name, override string
		want           []string // substrings of the result
		err            string
	}{
		{"no override keeps the template verbatim", "", []string{"# the lab's template", "fps: 30"}, ""},
		{"override merges key by key", "camera:\n  fps: 15\n", []string{"device: synthetic", "fps: 15", "bitrate_kbps: 2000"}, ""},
		{"override adds a section", "log:\n  level: debug\n", []string{"level: debug", "fps: 30"}, ""},
		{"override edged refuses", "camera:\n  fps: 1000\n", nil, "camera.fps: 1000 is out of range"},
		{"override with a typo", "camera:\n  fsp: 15\n", nil, `unknown key "fsp"`},
		{"override not a mapping", "- 1\n", nil, "must both be YAML mappings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Render(tmpl, tt.override, "device d")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Render: %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("result lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
