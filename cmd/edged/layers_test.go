package main

import (
	"fmt"
	"testing"

	"github.com/edgeflux/edge/internal/pipeline"
)

func TestLayerSpecs(t *testing.T) {
	for _, tt := range []struct {
		setting string
		w, h    int
		want    string
	}{
		{"auto", 1280, 720, "high 1280x720, medium 640x360, low 320x180"},
		{"auto", 1920, 1080, "high 1920x1080, medium 960x540, low 480x270"},
		{"auto", 640, 480, "high 640x480, medium 320x240"},
		{"auto", 320, 240, "high 320x240"},
		{"1", 1280, 720, "high 1280x720"},
		{"2", 1280, 720, "high 1280x720, medium 640x360"},
		{"3", 640, 360, "high 640x360, medium 320x180, low 160x90"},
		{"3", 200, 150, "high 200x150, medium 100x74"}, // a quarter would be 50x37: left out
		{"2", 1278, 718, "high 1278x718, medium 638x358"},
	} {
		t.Run(fmt.Sprintf("%s %dx%d", tt.setting, tt.w, tt.h), func(t *testing.T) {
			got := ""
			for i, s := range layerSpecs(tt.setting, tt.w, tt.h) {
				if i > 0 {
					got += ", "
				}
				got += fmt.Sprintf("%v %dx%d", s.quality, s.w, s.h)
			}
			if got != tt.want {
				t.Errorf("layers %q", got)
			}
		})
	}
	if s := layerSpecs("auto", 1280, 720); s[1].quality.RID() != "h" || s[2].quality != pipeline.QualityLow {
		t.Errorf("rids: %+v", s)
	}
}

func TestLayerBitrate(t *testing.T) {
	for _, tt := range []struct{ bps, div, want int }{
		{2_000_000, 1, 2_000_000}, {2_000_000, 2, 666_666}, {2_000_000, 4, 200_000}, {500_000, 4, 100_000},
	} {
		if got := layerBitrate(tt.bps, tt.div); got != tt.want {
			t.Errorf("layerBitrate(%d, %d) = %d; want %d", tt.bps, tt.div, got, tt.want)
		}
	}
}
