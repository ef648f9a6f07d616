package config

import (
	"os"
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParse checks that Parse never panics, that Validate copes with whatever
// Parse accepts, and that an accepted config survives a round trip through
// yaml.Marshal unchanged.
func FuzzParse(f *testing.F) {
	if ref, err := os.ReadFile(referencePath); err == nil {
		f.Add(ref)
	} else {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"",
		"version: 2\n",
		"http:\n  listn: :80\n",
		"http: 8080\n",
		"- a\n- b\n",
		"camera: {width: wide, fps: 1e3}\n",
		"camera:\n  fps: 1\n  fps: 2\n",
		"webrtc:\n  interfaces: [eth0, ~, \"\"]\n  nat_1to1_ips: [\"::1\"]\n",
		"encoder:\n  keyframe_interval: -1h\n",
		"a: &a {fps: 1}\ncamera: *a\n",
		"http: {}\n---\nlog: {}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		_ = c.Validate()
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		c2, err := Parse(out, "marshalled.yaml")
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v\nyaml:\n%s", c2, c, out)
		}
	})
}
