package election_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/election"
)

// FuzzVerifyBackup: whatever a backup file holds, VerifyBackup answers
// with info or an error (ErrInvalidBackup for bad content), never a panic;
// and what it accepts has a size and checksum that match. The seeds are a
// valid backup and cut or changed copies; CI runs only them.
func FuzzVerifyBackup(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.hb")
	w, err := election.CreateBackup(path)
	if err != nil {
		f.Fatal(err)
	}
	data := []byte("some snapshot bytes, any will do for the file layout")
	if _, err := w.Write(data); err != nil {
		f.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if _, err := w.Commit(election.BackupInfo{ClusterID: "c", Revision: 3, Term: 1}, uint64(len(data)), sum[:]); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid[len(data):])
	f.Add([]byte{})
	f.Add([]byte("HBBACKUP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f.hb")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := election.VerifyBackup(p)
		if err != nil {
			if !errors.Is(err, election.ErrInvalidBackup) {
				t.Fatalf("error not ErrInvalidBackup: %v", err)
			}
			return
		}
		if info.Size > uint64(len(b)) {
			t.Fatalf("accepted %d bytes of data in a %d-byte file", info.Size, len(b))
		}
		got := sha256.Sum256(b[:info.Size])
		if info.SHA256 != hex.EncodeToString(got[:]) {
			t.Fatalf("accepted data whose SHA-256 is not the trailer's")
		}
	})
}
