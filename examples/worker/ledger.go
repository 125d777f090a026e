package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors of the ledger.
var (
	// ErrStaleToken: a write carried a fencing token lower than the highest
	// the ledger has accepted. The writer is a deposed leader and must stop.
	ErrStaleToken = errors.New("ledger: stale fencing token")
	// ErrCorrupt: a line of the ledger file is not a record.
	ErrCorrupt = errors.New("ledger: malformed record")
)

// Record is one line of the ledger.
type Record struct {
	// Token is the fencing token of the leadership that wrote it.
	Token uint64
	// Node is the id of the writer's node.
	Node string
	// Seq numbers the writes of one leadership, from 1.
	Seq uint64
	// At is the writer's clock when it wrote.
	At time.Time
}

func (r Record) String() string {
	return fmt.Sprintf("token=%d node=%s seq=%d at=%s", r.Token, r.Node, r.Seq, r.At.UTC().Format(time.RFC3339Nano))
}

// Ledger stands for the downstream system a leader writes to: an
// append-only file of records shared by every worker (on one machine, or on
// a volume several containers mount). It is fenced: it accepts a record only
// if its token is at least the highest token already written, so a deposed
// leader that still runs (paused, slow to notice) cannot write after its
// successor. That check is what a real downstream system must do with the
// token; cancelling the old leader's job is only the fast path.
//
// Append holds an exclusive flock(2) on the file while it reads the highest
// token and writes, so writers in different processes are serialised. The
// file only ever gains records whose token is not below the last one, so
// the last record carries the highest token ever written: that is how the
// ledger remembers it across processes and restarts.
type Ledger struct {
	path string
}

// OpenLedger returns the ledger at path, creating the file (and its
// directory) if missing.
func OpenLedger(path string) (*Ledger, error) {
	if path == "" {
		return nil, errors.New("ledger: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &Ledger{path: path}, nil
}

// Path is the ledger file.
func (l *Ledger) Path() string { return l.path }

// Append writes r unless the ledger holds a higher token (ErrStaleToken,
// nothing written). Equal tokens are accepted: one leadership writes many
// records.
func (l *Ledger) Append(r Record) error {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer f.Close() // also releases the lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("ledger: lock %s: %w", l.path, err)
	}
	highest, err := lastToken(f)
	if err != nil {
		return err
	}
	if r.Token < highest {
		return fmt.Errorf("%w: token %d is below %d, the highest written to %s", ErrStaleToken, r.Token, highest, l.path)
	}
	if _, err := io.WriteString(f, r.String()+"\n"); err != nil {
		return fmt.Errorf("ledger: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("ledger: sync: %w", err)
	}
	return nil
}

// Highest returns the highest token written (0 for an empty ledger).
func (l *Ledger) Highest() (uint64, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return 0, fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		return 0, fmt.Errorf("ledger: lock %s: %w", l.path, err)
	}
	return lastToken(f)
}

// tailSize is how much of the file's end lastToken reads: far more than one
// record.
const tailSize = 4096

// lastToken returns the token of the file's last record (0 when empty).
func lastToken(f *os.File) (uint64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("ledger: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	n := min(size, tailSize)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("ledger: read: %w", err)
	}
	text := strings.TrimRight(string(buf), "\n")
	last := text[strings.LastIndexByte(text, '\n')+1:]
	r, err := parseRecord(last)
	if err != nil {
		return 0, err
	}
	return r.Token, nil
}

// parseRecord parses one line written by Record.String.
func parseRecord(line string) (Record, error) {
	var r Record
	fields := strings.Fields(line)
	if len(fields) != 4 {
		return r, fmt.Errorf("%w: %q", ErrCorrupt, line)
	}
	var err error
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return r, fmt.Errorf("%w: %q", ErrCorrupt, line)
		}
		switch k {
		case "token":
			r.Token, err = strconv.ParseUint(v, 10, 64)
		case "node":
			r.Node = v
		case "seq":
			r.Seq, err = strconv.ParseUint(v, 10, 64)
		case "at":
			r.At, err = time.Parse(time.RFC3339Nano, v)
		default:
			err = fmt.Errorf("unknown field %q", k)
		}
		if err != nil {
			return r, fmt.Errorf("%w: %q: %v", ErrCorrupt, line, err)
		}
	}
	return r, nil
}

// ReadLedger returns every record of the ledger file at path.
func ReadLedger(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		return nil, fmt.Errorf("ledger: lock %s: %w", path, err)
	}
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, err := parseRecord(sc.Text())
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("ledger: read: %w", err)
	}
	return out, nil
}

// CheckLedger verifies what fencing promises of a ledger's records: tokens
// never go down, and every token was written by one node only (one leader
// per term).
func CheckLedger(records []Record) error {
	writer := map[uint64]string{}
	for i, r := range records {
		if i > 0 && r.Token < records[i-1].Token {
			return fmt.Errorf("record %d (%v): token went down from %d", i+1, r, records[i-1].Token)
		}
		if w, ok := writer[r.Token]; ok && w != r.Node {
			return fmt.Errorf("record %d (%v): token %d was written by %s and %s", i+1, r, r.Token, w, r.Node)
		}
		writer[r.Token] = r.Node
	}
	return nil
}
