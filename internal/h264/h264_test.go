package h264

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// annexB joins NAL units with 4-byte start codes.
func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

func TestNALTypeString(t *testing.T) {
	tests := []struct {
		t    NALType
		want string
	}{
		{NALSlice, "slice"},
		{NALIDR, "IDR"},
		{NALSEI, "SEI"},
		{NALSPS, "SPS"},
		{NALPPS, "PPS"},
		{NALAUD, "AUD"},
		{12, "NALType(12)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("NALType(%d).String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}

func TestType(t *testing.T) {
	tests := []struct {
		name string
		nal  []byte
		want NALType
	}{
		{"empty", nil, 0},
		{"sps", []byte{0x67, 0x42}, NALSPS},
		{"idr with nri 0", []byte{0x05}, NALIDR},
		{"slice", []byte{0x41}, NALSlice},
		{"forbidden bit ignored", []byte{0xe8}, NALPPS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Type(tt.nal); got != tt.want {
				t.Errorf("Type(% x) = %v, want %v", tt.nal, got, tt.want)
			}
		})
	}
}

func TestSplitAnnexB(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{"empty", nil, nil},
		{"no start code", []byte{0x65, 0x88, 0x84, 0x00}, nil},
		{"only start code", []byte{0, 0, 1}, nil},
		{"only zeros", []byte{0, 0, 0, 0, 0}, nil},
		{
			"3-byte start codes",
			[]byte{0, 0, 1, 0x67, 0xaa, 0, 0, 1, 0x68, 0xbb, 0, 0, 1, 0x65, 0xcc},
			[][]byte{{0x67, 0xaa}, {0x68, 0xbb}, {0x65, 0xcc}},
		},
		{
			"4-byte start codes",
			[]byte{0, 0, 0, 1, 0x67, 0xaa, 0, 0, 0, 1, 0x68, 0xbb, 0, 0, 0, 1, 0x65, 0xcc},
			[][]byte{{0x67, 0xaa}, {0x68, 0xbb}, {0x65, 0xcc}},
		},
		{
			"mixed start codes and trailing zeros",
			[]byte{0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 0, 1, 0x65, 0xcc, 0, 0, 1, 0x41, 0x9a, 0, 0, 0},
			[][]byte{{0x09, 0xf0}, {0x65, 0xcc}, {0x41, 0x9a}},
		},
		{
			"leading garbage skipped",
			[]byte{0xab, 0xcd, 0, 0, 1, 0x65, 0x01},
			[][]byte{{0x65, 0x01}},
		},
		{
			"empty units skipped",
			[]byte{0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0x65, 0x01, 0, 0, 1},
			[][]byte{{0x65, 0x01}},
		},
		{
			"emulation prevention kept",
			[]byte{0, 0, 1, 0x65, 0, 0, 3, 1, 0, 0, 2, 0x80},
			[][]byte{{0x65, 0, 0, 3, 1, 0, 0, 2, 0x80}},
		},
		{
			"one byte units",
			[]byte{0, 0, 1, 0x09, 0, 0, 1, 0x65},
			[][]byte{{0x09}, {0x65}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitAnnexB(tt.in)
			if !slices.EqualFunc(got, tt.want, bytes.Equal) {
				t.Fatalf("SplitAnnexB(% x) = % x, want % x", tt.in, got, tt.want)
			}
			for i, n := range got {
				if cap(n) != len(n) {
					t.Errorf("unit %d: cap %d > len %d, an append would overwrite the stream", i, cap(n), len(n))
				}
				if !within(n, tt.in) {
					t.Errorf("unit %d is not a sub-slice of the input", i)
				}
			}
		})
	}
}

// within reports whether sub shares memory with b, i.e. is a sub-slice of it.
func within(sub, b []byte) bool {
	if len(sub) == 0 || len(b) == 0 {
		return false
	}
	full := b[:cap(b)]
	for i := range full {
		if &full[i] == &sub[0] {
			return true
		}
	}
	return false
}

func TestSplitAnnexBAllocations(t *testing.T) {
	au := benchAU(50_000)
	allocs := testing.AllocsPerRun(20, func() { SplitAnnexB(au) })
	if allocs != 1 {
		t.Errorf("SplitAnnexB allocated %v times, want 1 (the result)", allocs)
	}
}

func TestIsKeyframe(t *testing.T) {
	tests := []struct {
		name string
		au   []byte
		want bool
	}{
		{"empty", nil, false},
		{"idr", annexB([]byte{0x09, 0xf0}, testSPS(), testPPS(), []byte{0x65, 0x88}), true},
		{"idr only", []byte{0, 0, 1, 0x25, 0xb8}, true},
		{"p slice", annexB([]byte{0x09, 0x30}, []byte{0x41, 0x9a}), false},
		{"parameter sets only", annexB(testSPS(), testPPS()), false},
		{"idr byte outside a unit", []byte{0x65, 0, 0, 1, 0x41}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsKeyframe(tt.au); got != tt.want {
				t.Errorf("IsKeyframe(% x) = %v, want %v", tt.au, got, tt.want)
			}
		})
	}
}

// testSPS() and testPPS() return libx264's parameter sets for 640x480 Constrained Baseline.
func testSPS() []byte { return unhex("6742c01ed900a03db011000003000100000300320f162e48") }
func testPPS() []byte { return unhex("68cb83cb20") }

func TestEnsureParameterSets(t *testing.T) {
	aud := []byte{0x09, 0x10}
	sei := []byte{0x06, 0x05, 0x01, 0x80}
	idr := []byte{0x65, 0x88, 0x84, 0x21}
	slice := []byte{0x41, 0x9a, 0x02}
	otherSPS := []byte{0x67, 0x64, 0x00, 0x28, 0xac}
	otherPPS := []byte{0x68, 0xeb, 0xe3}
	tests := []struct {
		name string
		au   []byte
		want [][]byte // units of the result; nil means au itself comes back
	}{
		{"keyframe without parameter sets", annexB(idr), [][]byte{testSPS(), testPPS(), idr}},
		{"after leading aud", annexB(aud, sei, idr), [][]byte{aud, testSPS(), testPPS(), sei, idr}},
		{"3-byte start code", append([]byte{0, 0, 1}, idr...), [][]byte{testSPS(), testPPS(), idr}},
		{"leading garbage stays in front", append([]byte{0xab, 0, 0, 1}, idr...), [][]byte{testSPS(), testPPS(), idr}},
		{"pps missing", annexB(otherSPS, idr), [][]byte{testSPS(), testPPS(), otherSPS, idr}},
		{"sps missing", annexB(otherPPS, idr), [][]byte{testSPS(), testPPS(), otherPPS, idr}},
		{"parameter sets after idr", annexB(idr, otherSPS, otherPPS), [][]byte{testSPS(), testPPS(), idr, otherSPS, otherPPS}},
		{"non-keyframe", annexB(aud, slice), nil},
		{"already present", annexB(otherSPS, otherPPS, idr, idr), nil},
		{"already present after aud", annexB(aud, otherSPS, otherPPS, sei, idr), nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.au)
			got := EnsureParameterSets(tt.au, testSPS(), testPPS())
			if !bytes.Equal(tt.au, in) {
				t.Fatal("input modified")
			}
			if tt.want == nil {
				if len(got) != len(tt.au) || (len(got) > 0 && &got[0] != &tt.au[0]) {
					t.Fatalf("got a new AU % x, want the input slice back", got)
				}
				return
			}
			if units := SplitAnnexB(got); !slices.EqualFunc(units, tt.want, bytes.Equal) {
				t.Fatalf("units = % x, want % x", units, tt.want)
			}
			if again := EnsureParameterSets(got, testSPS(), testPPS()); &again[0] != &got[0] {
				t.Error("second call changed the AU again")
			}
		})
	}
	t.Run("empty parameter sets", func(t *testing.T) {
		au := annexB(idr)
		if got := EnsureParameterSets(au, nil, testPPS()); &got[0] != &au[0] {
			t.Error("AU changed although there was no SPS to insert")
		}
	})
}

// benchAU builds an IDR access unit of about size bytes with random, emulation-prevented slice
// data, like an encoder's output.
func benchAU(size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	slice := []byte{0x65}
	zeros := 0
	for len(slice) < size {
		b := byte(rng.UintN(256))
		if zeros >= 2 && b <= 3 {
			slice = append(slice, 3)
			zeros = 0
		}
		slice = append(slice, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	slice = append(slice, 0x80)
	return annexB([]byte{0x09, 0x10}, testSPS(), testPPS(), []byte{0x06, 0x05, 0x01, 0x80}, slice)
}

func BenchmarkSplitAnnexB(b *testing.B) {
	au := benchAU(50_000)
	b.SetBytes(int64(len(au)))
	b.ReportAllocs()
	for b.Loop() {
		if n := len(SplitAnnexB(au)); n != 5 {
			b.Fatalf("got %d units, want 5", n)
		}
	}
}

func FuzzSplitAnnexB(f *testing.F) {
	f.Add([]byte{})
	f.Add(annexB([]byte{0x09, 0x10}, testSPS(), testPPS(), []byte{0x65, 0x88}))
	f.Add([]byte{0xab, 0, 0, 1, 0, 0, 0, 1, 0x65, 0, 0, 3, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		units := SplitAnnexB(b)
		key := false
		for i, n := range units {
			if len(n) == 0 || n[len(n)-1] == 0 {
				t.Fatalf("unit %d = % x: empty or ends in a zero byte", i, n)
			}
			if bytes.Contains(n, []byte{0, 0, 1}) {
				t.Fatalf("unit %d = % x contains a start code", i, n)
			}
			if !within(n, b) {
				t.Fatalf("unit %d is not a sub-slice of the input", i)
			}
			key = key || Type(n) == NALIDR
		}
		if IsKeyframe(b) != key {
			t.Fatalf("IsKeyframe = %v, units say %v", !key, key)
		}
		got := EnsureParameterSets(b, testSPS(), testPPS())
		if !key {
			if len(got) != len(b) || (len(b) > 0 && &got[0] != &b[0]) {
				t.Fatal("non-keyframe changed")
			}
			return
		}
		if !IsKeyframe(got) {
			t.Fatal("result is no longer a keyframe")
		}
		if again := EnsureParameterSets(got, testSPS(), testPPS()); &again[0] != &got[0] {
			t.Fatal("not idempotent")
		}
	})
}
