package bench

import (
	"errors"
	"os"
	"testing"
	"time"
)

// A real /proc/PID/stat line (fields 14, 15 = utime 1500, stime 250), with a hostile
// command name holding spaces and a ") " that a naive split would take as the end.
const statLine = "4242 (evil) 7 (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1500 250 0 0 20 0 9 0 123456 1234567 3000 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n"

func TestParseStatCPU(t *testing.T) {
	got, err := ParseStatCPU([]byte(statLine))
	if err != nil || got != 1750 {
		t.Errorf("ParseStatCPU = %d, %v; want 1750", got, err)
	}
	for name, bad := range map[string]string{
		"no command":      "4242 S 1 2 3",
		"truncated":       "4242 (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0",
		"non-numeric cpu": "4242 (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 abc 250 0 0 20 0 9 0",
	} {
		if _, err := ParseStatCPU([]byte(bad)); !errors.Is(err, ErrBadProc) {
			t.Errorf("%s: err = %v, want ErrBadProc", name, err)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tnode\nVmPeak:\t  999 kB\nVmRSS:\t   13312 kB\nRssAnon:\t 5000 kB\n"
	if got, err := ParseVmRSS([]byte(status)); err != nil || got != 13312*1024 {
		t.Errorf("ParseVmRSS = %d, %v; want %d", got, err, 13312*1024)
	}
	for name, bad := range map[string]string{
		"missing (zombie)": "Name:\tnode\nState:\tZ (zombie)\n",
		"unit":             "VmRSS:\t 13 MB\n",
		"number":           "VmRSS:\t x kB\n",
	} {
		if _, err := ParseVmRSS([]byte(bad)); !errors.Is(err, ErrBadProc) {
			t.Errorf("%s: err = %v, want ErrBadProc", name, err)
		}
	}
}

func TestCPUPercent(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name       string
		a, b       ProcSample
		want       float64
		wantBadErr bool
	}{
		// 50 ticks = 0.5 s of CPU in 10 s of wall time: 5% of one core.
		{"5 percent", ProcSample{At: t0, CPUTicks: 1000}, ProcSample{At: t0.Add(10 * time.Second), CPUTicks: 1050}, 5, false},
		{"idle", ProcSample{At: t0, CPUTicks: 7}, ProcSample{At: t0.Add(30 * time.Second), CPUTicks: 7}, 0, false},
		// Two busy cores for 2 s: 200%.
		{"two cores", ProcSample{At: t0}, ProcSample{At: t0.Add(2 * time.Second), CPUTicks: 400}, 200, false},
		// Planted: the pid was reused by a younger process.
		{"counter went back", ProcSample{At: t0, CPUTicks: 900}, ProcSample{At: t0.Add(time.Second), CPUTicks: 10}, 0, true},
		{"no time passed", ProcSample{At: t0, CPUTicks: 1}, ProcSample{At: t0, CPUTicks: 2}, 0, true},
	} {
		got, err := CPUPercent(tc.a, tc.b)
		if tc.wantBadErr {
			if !errors.Is(err, ErrBadProc) {
				t.Errorf("%s: err = %v, want ErrBadProc", tc.name, err)
			}
			continue
		}
		if err != nil || got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("%s: CPUPercent = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSBytes < 1<<20 || s.RSSBytes > 4<<30 {
		t.Errorf("own RSS %d bytes is implausible", s.RSSBytes)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Error("ReadProc of a pid that cannot exist: no error")
	}
}
