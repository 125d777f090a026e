package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func rec(token uint64, node string, seq uint64) Record {
	return Record{Token: token, Node: node, Seq: seq, At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
}

func openTestLedger(t *testing.T) *Ledger {
	t.Helper()
	l, err := OpenLedger(filepath.Join(t.TempDir(), "sub", "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLedgerRejectsStaleToken plants a write from a deposed leader (a lower
// token after a higher one): the ledger refuses it and writes nothing.
func TestLedgerRejectsStaleToken(t *testing.T) {
	l := openTestLedger(t)
	for _, r := range []Record{rec(5, "n1", 1), rec(5, "n1", 2), rec(7, "n2", 1)} {
		if err := l.Append(r); err != nil {
			t.Fatalf("Append(%v): %v", r, err)
		}
	}
	err := l.Append(rec(5, "n1", 3))
	if !errors.Is(err, ErrStaleToken) {
		t.Fatalf("Append with token 5 after 7 = %v; want ErrStaleToken", err)
	}
	if h, err := l.Highest(); err != nil || h != 7 {
		t.Fatalf("Highest = %d, %v; want 7", h, err)
	}
	// A second Ledger value on the same file (another process) knows it too.
	other, err := OpenLedger(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Append(rec(6, "n3", 1)); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("other instance: Append with token 6 after 7 = %v; want ErrStaleToken", err)
	}
	if err := other.Append(rec(7, "n2", 2)); err != nil {
		t.Fatalf("Append with the current token: %v", err)
	}
	records, err := ReadLedger(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{rec(5, "n1", 1), rec(5, "n1", 2), rec(7, "n2", 1), rec(7, "n2", 2)}
	if fmt.Sprint(records) != fmt.Sprint(want) {
		t.Fatalf("records = %v; want %v", records, want)
	}
}

// TestLedgerConcurrentWriters: an old leader keeps writing while a new one
// starts; once the new token is in, every write of the old one is refused,
// and the file's tokens never go down.
func TestLedgerConcurrentWriters(t *testing.T) {
	l := openTestLedger(t)
	var wg sync.WaitGroup
	refusedAfter := make(chan int, 1)
	newWritten := make(chan struct{})
	wg.Add(2)
	go func() { // the old leader, token 3
		defer wg.Done()
		old, _ := OpenLedger(l.Path())
		for i := 1; ; i++ {
			err := old.Append(rec(3, "n1", uint64(i)))
			if errors.Is(err, ErrStaleToken) {
				refusedAfter <- i
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // the new leader, token 4, starts a moment later
		defer wg.Done()
		defer close(newWritten)
		time.Sleep(20 * time.Millisecond)
		if err := l.Append(rec(4, "n2", 1)); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	<-refusedAfter
	records, err := ReadLedger(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckLedger(records); err != nil {
		t.Fatal(err)
	}
	if last := records[len(records)-1]; last.Token != 4 {
		t.Fatalf("last record %v; want token 4's", last)
	}
}

// TestCheckLedger feeds the checker planted violations.
func TestCheckLedger(t *testing.T) {
	tests := []struct {
		name    string
		records []Record
		wantErr string
	}{
		{"empty", nil, ""},
		{"fine", []Record{rec(1, "n1", 1), rec(1, "n1", 2), rec(3, "n2", 1)}, ""},
		{"token goes down", []Record{rec(1, "n1", 1), rec(3, "n2", 1), rec(2, "n3", 1)}, "token went down from 3"},
		{"two writers of one token", []Record{rec(3, "n1", 1), rec(3, "n2", 1)}, "written by n1 and n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckLedger(tt.records)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckLedger = %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("CheckLedger = %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestLedgerPlantedFile: a lower token written behind the ledger's back is
// caught by CheckLedger, and a malformed line makes both reading and
// appending fail instead of guessing the highest token.
func TestLedgerPlantedFile(t *testing.T) {
	l := openTestLedger(t)
	if err := l.Append(rec(9, "n1", 1)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(l.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(rec(8, "n2", 1).String() + "\n"); err != nil {
		t.Fatal(err)
	}
	records, err := ReadLedger(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckLedger(records); err == nil {
		t.Fatal("CheckLedger accepted a token that went down")
	}
	if _, err := f.WriteString("garbage\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := ReadLedger(l.Path()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadLedger of a malformed line = %v; want ErrCorrupt", err)
	}
	if err := l.Append(rec(10, "n1", 1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Append after a malformed line = %v; want ErrCorrupt", err)
	}
}
