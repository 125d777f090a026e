package election_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// writtenDataDir runs a one-node cluster in a new data dir, commits entries,
// takes a snapshot, commits more, stops it and returns the dir.
func writtenDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	n, tr, err := singleNode(t, dir, "alpha", "n1")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	defer n.Close()
	testwait.Eventually(t, 10*time.Second, "the single voter to lead", func() (bool, string) { return n.Leadership().IsLeader, "" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 300; i++ {
		if i == 150 {
			if err := n.Raft().Snapshot().Error(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
		}
		if _, err := n.Apply(ctx, []byte(fmt.Sprintf("entry %d %s", i, strings.Repeat("x", 200)))); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// copyDir copies the tree src to a new dir and returns it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// bolt page layout (go.etcd.io/bbolt): a 16-byte header (id, flags, count,
// overflow); a meta page's body has magic, version, page size, flags, the
// root bucket (16 bytes), the freelist page id, ...
const (
	pageHeader   = 16
	leafFlag     = 0x02
	freelistFlag = 0x10
)

func boltPages(t *testing.T, path string) ([]byte, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int(binary.LittleEndian.Uint32(b[pageHeader+8:]))
	if ps < 512 || ps > 1<<16 {
		t.Fatalf("page size %d in %s", ps, path)
	}
	return b, ps
}

func scribble(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Intn(256))
	}
}

// snapshotFile returns the path of file in the data dir's one complete
// snapshot.
func snapshotFile(t *testing.T, dir, file string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", file))
	if err != nil || len(m) != 1 {
		t.Fatalf("snapshot %s: %v %v", file, m, err)
	}
	return m[0]
}

// TestCorruptDataDir: a data dir damaged in several ways never makes the
// node panic (before: "slice bounds out of range", SIGSEGV, "invalid
// freelist page"); New fails with ErrCorrupt naming the file and the way
// back.
func TestCorruptDataDir(t *testing.T) {
	base := writtenDataDir(t)
	rng := rand.New(rand.NewSource(13))
	tests := []struct {
		name    string
		file    string // the file the error must name, relative to the dir
		corrupt func(t *testing.T, dir string)
	}{
		{"random bytes in the leaf pages", "raft.db", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "raft.db")
			b, ps := boltPages(t, path)
			hit := 0
			for p := 2; (p+1)*ps <= len(b); p++ {
				if binary.LittleEndian.Uint16(b[p*ps+8:])&leafFlag != 0 {
					scribble(rng, b[p*ps+pageHeader:(p+1)*ps])
					hit++
				}
			}
			if hit == 0 {
				t.Fatal("no leaf page found")
			}
			writeFile(t, path, b)
		}},
		{"random bytes in the log entries (pages intact)", "raft.db", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "raft.db")
			b, ps := boltPages(t, path)
			hit := 0
			for p := 2; (p+1)*ps <= len(b); p++ {
				page := b[p*ps:]
				if binary.LittleEndian.Uint16(page[8:]) != leafFlag {
					continue
				}
				for i := 0; i < int(binary.LittleEndian.Uint16(page[10:])); i++ {
					e := page[pageHeader+16*i:]
					if binary.LittleEndian.Uint32(e) != 0 { // a bucket
						continue
					}
					pos, ksize, vsize := binary.LittleEndian.Uint32(e[4:]), binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
					if vsize > 8 { // a log entry, not the term or vote
						v := e[pos+ksize : pos+ksize+vsize]
						scribble(rng, v)
						hit++
					}
				}
			}
			if hit == 0 {
				t.Fatal("no log entry found")
			}
			writeFile(t, path, b)
		}},
		{"random page headers", "raft.db", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "raft.db")
			b, ps := boltPages(t, path)
			for p := 2; (p+1)*ps <= len(b); p++ {
				if binary.LittleEndian.Uint16(b[p*ps+8:])&leafFlag != 0 {
					scribble(rng, b[p*ps+8:p*ps+pageHeader])
				}
			}
			writeFile(t, path, b)
		}},
		{"garbage freelist", "raft.db", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "raft.db")
			b, ps := boltPages(t, path)
			for m := 0; m < 2; m++ {
				fl := int(binary.LittleEndian.Uint64(b[m*ps+pageHeader+32:]))
				if (fl+1)*ps > len(b) || binary.LittleEndian.Uint16(b[fl*ps+8:])&freelistFlag == 0 {
					t.Fatalf("meta %d: freelist page %d is not one", m, fl)
				}
				scribble(rng, b[fl*ps+pageHeader:(fl+1)*ps])
				binary.LittleEndian.PutUint16(b[fl*ps+10:], 0xffff) // count
			}
			writeFile(t, path, b)
		}},
		{"truncated to half", "raft.db", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "raft.db")
			b, ps := boltPages(t, path)
			writeFile(t, path, b[:len(b)/2/ps*ps])
		}},
		{"truncated inside the meta pages", "raft.db", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "raft.db")
			b, _ := boltPages(t, path)
			writeFile(t, path, b[:100])
		}},
		{"zeroed meta pages", "raft.db", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "raft.db")
			b, ps := boltPages(t, path)
			clear(b[:2*ps])
			writeFile(t, path, b)
		}},
		{"snapshot state flipped", "snapshots", func(t *testing.T, dir string) {
			path := snapshotFile(t, dir, "state.bin")
			b, err := os.ReadFile(path)
			if err != nil || len(b) == 0 {
				t.Fatalf("read %s: %v", path, err)
			}
			b[len(b)/2] ^= 0xff
			writeFile(t, path, b)
		}},
		{"snapshot metadata garbage", "snapshots", func(t *testing.T, dir string) {
			writeFile(t, snapshotFile(t, dir, "meta.json"), []byte("{\"ID\": garbage"))
		}},
		{"identity garbage", "cluster.json", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "cluster.json"), []byte{0x00, 0xff, '{'})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tc.corrupt(t, dir)
			n, tr, err := singleNode(t, dir, "alpha", "n1")
			if err == nil {
				_ = n.Close()
				_ = tr.Close()
				t.Fatal("a corrupt data dir opened")
			}
			if !errors.Is(err, election.ErrCorrupt) {
				t.Fatalf("error %v, want election.ErrCorrupt", err)
			}
			for _, want := range []string{filepath.Join(dir, tc.file), "move the data dir " + dir + " away"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
			t.Logf("%s", err)
		})
	}
	t.Run("intact copy", func(t *testing.T) {
		n, tr, err := singleNode(t, copyDir(t, base), "alpha", "n1")
		if err != nil {
			t.Fatalf("an intact copy does not open: %v", err)
		}
		_ = n.Close()
		_ = tr.Close()
	})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
