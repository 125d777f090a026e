package bench

import (
	"errors"
	"math"
	"slices"
	"time"
)

// Sentinel errors of the measurement logic.
var (
	// ErrNoSamples is returned when a figure is asked of an empty set.
	ErrNoSamples = errors.New("no samples")
	// ErrNoLastAnswer: the victim never answered a status poll before the fault, so there is
	// no moment to measure from.
	ErrNoLastAnswer = errors.New("victim never answered before the fault")
	// ErrNotConverged: the survivors never all named one new leader in the samples given.
	ErrNotConverged = errors.New("survivors never agreed on a new leader")
	// ErrBadProc reports /proc content that could not be parsed, or a counter that went
	// backwards (the pid was reused).
	ErrBadProc = errors.New("unreadable /proc data")
	// ErrNoLeader: the cluster did not settle on one leader within the deadline.
	ErrNoLeader = errors.New("cluster has no stable leader")
	// ErrBadConfig reports an invalid runner or command configuration.
	ErrBadConfig = errors.New("bad configuration")
)

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds: the smallest value
// such that at least p% of the values are at or below it. With 20 values p99 is the maximum —
// it never interpolates below an observed value.
func Percentile(ds []time.Duration, p float64) (time.Duration, error) {
	if len(ds) == 0 {
		return 0, ErrNoSamples
	}
	if p <= 0 || p > 100 || math.IsNaN(p) {
		return 0, errors.New("percentile out of (0, 100]")
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1], nil
}

// Summary is the distribution of one failover figure, in milliseconds for readable JSON.
// Failed counts faults whose failover could not be measured (no convergence before the
// deadline); they are not in the percentiles and are always reported beside them.
type Summary struct {
	N      int       `json:"n"`
	Failed int       `json:"failed"`
	P50Ms  float64   `json:"p50_ms"`
	P99Ms  float64   `json:"p99_ms"`
	MaxMs  float64   `json:"max_ms"`
	MinMs  float64   `json:"min_ms"`
	MeanMs float64   `json:"mean_ms"`
	AllMs  []float64 `json:"all_ms"`
}

// Summarize computes the summary of ds; failed is carried through unchanged.
func Summarize(ds []time.Duration, failed int) Summary {
	s := Summary{N: len(ds), Failed: failed}
	if len(ds) == 0 {
		return s
	}
	p50, _ := Percentile(ds, 50)
	p99, _ := Percentile(ds, 99)
	var sum time.Duration
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		sum += d
		lo, hi = min(lo, d), max(hi, d)
		s.AllMs = append(s.AllMs, ms(d))
	}
	s.P50Ms, s.P99Ms, s.MaxMs, s.MinMs = ms(p50), ms(p99), ms(hi), ms(lo)
	s.MeanMs = ms(sum / time.Duration(len(ds)))
	return s
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
