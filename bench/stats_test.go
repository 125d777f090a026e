package bench

import (
	"errors"
	"testing"
	"time"
)

func msList(vs ...int) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	twenty := msList(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1) // unsorted
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"single", msList(7), 50, 7 * time.Millisecond},
		{"single p99", msList(7), 99, 7 * time.Millisecond},
		{"p50 of 20 is the 10th", twenty, 50, 10 * time.Millisecond},
		{"p99 of 20 is the max", twenty, 99, 20 * time.Millisecond},
		{"p95 of 20 is the 19th", twenty, 95, 19 * time.Millisecond},
		{"p100", twenty, 100, 20 * time.Millisecond},
		{"p50 of 3", msList(30, 10, 20), 50, 20 * time.Millisecond},
		{"p50 of 4 never interpolates", msList(10, 20, 30, 40), 50, 20 * time.Millisecond},
		{"one outlier shows at p99", append(msList(1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 900*time.Millisecond), 99, 900 * time.Millisecond},
	} {
		got, err := Percentile(tc.in, tc.p)
		if err != nil || got != tc.want {
			t.Errorf("%s: Percentile = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := Percentile(nil, 50); !errors.Is(err, ErrNoSamples) {
		t.Errorf("empty: err = %v, want ErrNoSamples", err)
	}
	for _, p := range []float64{0, -1, 101} {
		if _, err := Percentile(msList(1), p); err == nil {
			t.Errorf("p=%v: no error", p)
		}
	}
	in := msList(3, 1, 2)
	_, _ = Percentile(in, 50)
	if in[0] != 3*time.Millisecond {
		t.Error("Percentile sorted its input in place")
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize(msList(40, 10, 30, 20), 2)
	want := Summary{N: 4, Failed: 2, P50Ms: 20, P99Ms: 40, MaxMs: 40, MinMs: 10, MeanMs: 25,
		AllMs: []float64{40, 10, 30, 20}}
	if s.N != want.N || s.Failed != want.Failed || s.P50Ms != want.P50Ms || s.P99Ms != want.P99Ms ||
		s.MaxMs != want.MaxMs || s.MinMs != want.MinMs || s.MeanMs != want.MeanMs || len(s.AllMs) != 4 {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if got := Summarize([]time.Duration{1234567 * time.Nanosecond}, 0).P50Ms; got != 1.23 {
		t.Errorf("rounding: %v ms, want 1.23", got)
	}
	if e := Summarize(nil, 3); e.N != 0 || e.Failed != 3 || e.P50Ms != 0 {
		t.Errorf("empty summary = %+v", e)
	}
}
