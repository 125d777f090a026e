package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ClockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ). Linux fixes it at
// 100 for user space on every architecture Go runs on, whatever the kernel's HZ.
const ClockTicks = 100

// ProcSample is one reading of a process's CPU counters and resident memory.
type ProcSample struct {
	At       time.Time
	CPUTicks uint64 // utime + stime, in ClockTicks per second
	RSSBytes uint64 // VmRSS
}

// ReadProc reads /proc/PID/stat and /proc/PID/status.
func ReadProc(pid int) (ProcSample, error) {
	at := time.Now()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, err
	}
	ticks, err := ParseStatCPU(stat)
	if err != nil {
		return ProcSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	rss, err := ParseVmRSS(status)
	if err != nil {
		return ProcSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return ProcSample{At: at, CPUTicks: ticks, RSSBytes: rss}, nil
}

// ParseStatCPU returns utime+stime (fields 14 and 15) of a /proc/PID/stat line. The command
// name (field 2) is in parentheses and may itself hold spaces and ')', so fields are counted
// from the last ')'.
func ParseStatCPU(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("%w: stat has no command field", ErrBadProc)
	}
	fields := bytes.Fields(stat[end+1:])
	// After the command: field 3 (state) is fields[0], so field k is fields[k-3].
	if len(fields) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after the command", ErrBadProc, len(fields))
	}
	utime, err1 := strconv.ParseUint(string(fields[14-3]), 10, 64)
	stime, err2 := strconv.ParseUint(string(fields[15-3]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: utime %q stime %q", ErrBadProc, fields[11], fields[12])
	}
	return utime + stime, nil
}

// ParseVmRSS returns the VmRSS line of /proc/PID/status in bytes.
func ParseVmRSS(status []byte) (uint64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrBadProc, bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrBadProc, bytes.TrimSpace(line))
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS line (zombie or kernel thread?)", ErrBadProc)
}

// CPUPercent is the CPU a process used between two readings, in percent of one core.
// It fails if the counter went backwards (another process got the pid) or no time passed.
func CPUPercent(a, b ProcSample) (float64, error) {
	if b.CPUTicks < a.CPUTicks {
		return 0, fmt.Errorf("%w: cpu ticks went from %d to %d", ErrBadProc, a.CPUTicks, b.CPUTicks)
	}
	wall := b.At.Sub(a.At).Seconds()
	if wall <= 0 {
		return 0, fmt.Errorf("%w: readings %v apart", ErrBadProc, b.At.Sub(a.At))
	}
	cpu := float64(b.CPUTicks-a.CPUTicks) / ClockTicks
	return 100 * cpu / wall, nil
}
