package election

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/internal/atomicfile"
)

// A backup file ('heartbeat snapshot save') is the state machine's snapshot
// bytes followed by a trailer:
//
//	data (Size bytes) | trailer JSON (BackupInfo) | uint64 big-endian: trailer length | "HBBACKUP"
//
// The trailer goes last so that the data streams straight into the file as
// it arrives; the checksum (SHA-256 of the data) and the exact layout make
// a truncated or damaged file fail with ErrInvalidBackup before anything
// reads the data.
const (
	backupMagic      = "HBBACKUP"
	backupTailLen    = 8 + len(backupMagic)
	maxBackupTrailer = 64 << 10
)

// ErrInvalidBackup: a backup file is truncated, damaged or not a backup at
// all; the message says which and names the file.
var ErrInvalidBackup error = &sentinel{msg: "election: invalid backup file", retryable: false}

// BackupInfo describes a backup: where it comes from and what it holds. It
// is the backup file's trailer (JSON).
type BackupInfo struct {
	ClusterID string `json:"cluster_id"` // the cluster it was taken from
	NodeID    string `json:"node_id"`    // the node that encoded it
	Revision  uint64 `json:"revision"`   // raft index of the last command it includes
	Term      uint64 `json:"term"`       // raft term when it was taken
	Format    string `json:"format"`     // the state machine's snapshot encoding
	Size      uint64 `json:"size"`       // bytes of snapshot data
	SHA256    string `json:"sha256"`     // hex SHA-256 of the data
}

// BackupWriter writes a backup file: the data through Write, then Commit
// with the sender's digest. Nothing appears at the path until Commit
// succeeds (the bytes go to a temporary file beside it); Abort removes it.
type BackupWriter struct {
	path string
	f    *os.File
	sum  hashWriter
	size uint64
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// CreateBackup starts a backup file at path (mode 0600).
func CreateBackup(path string) (*BackupWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("election: create backup: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("election: create backup: %w", err)
	}
	return &BackupWriter{path: path, f: f, sum: sha256.New()}, nil
}

// Write appends snapshot data.
func (w *BackupWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	_, _ = w.sum.Write(p[:n])
	w.size += uint64(n)
	if err != nil {
		return n, fmt.Errorf("election: write backup: %w", err)
	}
	return n, nil
}

// Commit checks the data written against the sender's size and SHA-256,
// writes the trailer (info with that size and checksum), syncs and moves
// the file into place. On error nothing is left at the path.
func (w *BackupWriter) Commit(info BackupInfo, size uint64, sha []byte) (BackupInfo, error) {
	got := w.sum.Sum(nil)
	if w.size != size || !bytes.Equal(got, sha) {
		w.Abort()
		return BackupInfo{}, fmt.Errorf("%w: received %d bytes with SHA-256 %x, the node sent %d bytes with %x: damaged in transit; nothing written",
			ErrInvalidBackup, w.size, got, size, sha)
	}
	info.Size, info.SHA256 = size, hex.EncodeToString(got)
	trailer, err := json.Marshal(info)
	if err != nil {
		w.Abort()
		return BackupInfo{}, fmt.Errorf("election: encode backup trailer: %w", err)
	}
	tail := make([]byte, 0, len(trailer)+backupTailLen)
	tail = append(tail, trailer...)
	tail = binary.BigEndian.AppendUint64(tail, uint64(len(trailer)))
	tail = append(tail, backupMagic...)
	if _, err := w.f.Write(tail); err != nil {
		w.Abort()
		return BackupInfo{}, fmt.Errorf("election: write backup: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return BackupInfo{}, fmt.Errorf("election: sync backup: %w", err)
	}
	if err := w.f.Close(); err != nil {
		_ = os.Remove(w.f.Name())
		return BackupInfo{}, fmt.Errorf("election: close backup: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.path); err != nil {
		_ = os.Remove(w.f.Name())
		return BackupInfo{}, fmt.Errorf("election: move backup into place: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(w.path)); err != nil {
		return BackupInfo{}, err
	}
	return info, nil
}

// Abort drops the temporary file.
func (w *BackupWriter) Abort() {
	_ = w.f.Close()
	_ = os.Remove(w.f.Name())
}

// VerifyBackup reads a backup file's trailer and checks the data against
// it (size and SHA-256). Every failure wraps ErrInvalidBackup (or is the
// file's I/O error) and names the file; it never panics on any content.
func VerifyBackup(path string) (BackupInfo, error) {
	f, info, err := openBackup(path)
	if err != nil {
		return BackupInfo{}, err
	}
	_ = f.Close()
	return info, nil
}

// openBackup verifies the backup at path and returns it open, positioned
// at the start of the data.
func openBackup(path string) (*os.File, BackupInfo, error) {
	bad := func(format string, args ...any) (*os.File, BackupInfo, error) {
		return nil, BackupInfo{}, fmt.Errorf("%w: %s: %s", ErrInvalidBackup, path, fmt.Sprintf(format, args...))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, BackupInfo{}, fmt.Errorf("election: open backup: %w", err)
	}
	fail := func(format string, args ...any) (*os.File, BackupInfo, error) {
		_ = f.Close()
		return bad(format, args...)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, BackupInfo{}, fmt.Errorf("election: open backup: %w", err)
	}
	total := st.Size()
	if total < int64(backupTailLen) {
		return fail("%d bytes: too short to be a backup (truncated?)", total)
	}
	tail := make([]byte, backupTailLen)
	if _, err := f.ReadAt(tail, total-int64(backupTailLen)); err != nil {
		_ = f.Close()
		return nil, BackupInfo{}, fmt.Errorf("election: read backup: %w", err)
	}
	if string(tail[8:]) != backupMagic {
		return fail("no backup trailer at the end: truncated, or not written by 'heartbeat snapshot save'")
	}
	tlen := binary.BigEndian.Uint64(tail[:8])
	if tlen == 0 || tlen > maxBackupTrailer || int64(tlen) > total-int64(backupTailLen) {
		return fail("trailer length %d is impossible in a file of %d bytes", tlen, total)
	}
	trailer := make([]byte, tlen)
	if _, err := f.ReadAt(trailer, total-int64(backupTailLen)-int64(tlen)); err != nil {
		_ = f.Close()
		return nil, BackupInfo{}, fmt.Errorf("election: read backup: %w", err)
	}
	var info BackupInfo
	if err := json.Unmarshal(trailer, &info); err != nil {
		return fail("trailer is not valid: %v", err)
	}
	dataLen := total - int64(backupTailLen) - int64(tlen)
	if info.Size != uint64(dataLen) {
		return fail("the trailer says %d bytes of data, the file holds %d: truncated or damaged", info.Size, dataLen)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, dataLen)); err != nil {
		_ = f.Close()
		return nil, BackupInfo{}, fmt.Errorf("election: read backup: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != info.SHA256 {
		return fail("checksum mismatch (SHA-256 %s, the trailer says %s): the data is damaged", got, info.SHA256)
	}
	return f, info, nil
}

// OpenBackupData verifies the backup at path and returns a reader of its
// snapshot data (close it) and its info.
func OpenBackupData(path string) (io.ReadCloser, BackupInfo, error) {
	f, info, err := openBackup(path)
	if err != nil {
		return nil, BackupInfo{}, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, 0, int64(info.Size)), f}, info, nil
}

// RestoreConfig says which backup seeds which new data dir, for which node.
type RestoreConfig struct {
	// Backup is the backup file's path.
	Backup string
	// DataDir is the new node's data dir; it must not exist or be empty.
	DataDir string
	// ClusterID and NodeID are the new cluster's name and the node's id,
	// recorded in the data dir's identity file: the node must be started
	// with the same --cluster-id and --node-id.
	ClusterID string
	NodeID    string
	// PeerAddr is the node's advertised peer address, its entry in the new
	// one-voter configuration: start the node on it.
	PeerAddr string
}

// RestoreBackup seeds a new data dir from a backup (etcdctl snapshot
// restore): it verifies the file, checks that fsm (a fresh, empty state
// machine of the application) accepts the data, and writes a fresh
// identity, a raft snapshot of the data at the backup's revision and term
// whose configuration is this one node as the only voter, and a current
// term equal to the backup's (fencing tokens keep growing). Started on that
// dir, the node elects itself and serves the restored state; add members
// with join. Errors: ErrInvalidBackup, ErrDataDirNotEmpty, ErrInvalidConfig.
func RestoreBackup(cfg RestoreConfig, fsm raft.FSM) (BackupInfo, error) {
	switch {
	case cfg.Backup == "" || cfg.DataDir == "" || cfg.ClusterID == "" || cfg.NodeID == "" || cfg.PeerAddr == "":
		return BackupInfo{}, fmt.Errorf("%w: restore needs the backup, a data dir, a cluster id, a node id and a peer address", ErrInvalidConfig)
	case fsm == nil:
		return BackupInfo{}, fmt.Errorf("%w: restore needs an FSM", ErrInvalidConfig)
	}
	info, err := VerifyBackup(cfg.Backup)
	if err != nil {
		return BackupInfo{}, err
	}
	if info.Revision == 0 {
		return BackupInfo{}, fmt.Errorf("%w: %s: revision 0: an empty state", ErrInvalidBackup, cfg.Backup)
	}
	rc, _, err := OpenBackupData(cfg.Backup)
	if err != nil {
		return BackupInfo{}, err
	}
	if err := fsm.Restore(rc); err != nil { // Restore closes rc
		return BackupInfo{}, fmt.Errorf("%w: %s: the state machine refuses the data: %v", ErrInvalidBackup, cfg.Backup, err)
	}
	if err := emptyDir(cfg.DataDir); err != nil {
		return BackupInfo{}, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return BackupInfo{}, fmt.Errorf("election: create data dir: %w", err)
	}
	if err := seedDataDir(cfg, info); err != nil {
		// Leave nothing half-made behind: the dir was empty.
		if entries, rerr := os.ReadDir(cfg.DataDir); rerr == nil {
			for _, e := range entries {
				_ = os.RemoveAll(filepath.Join(cfg.DataDir, e.Name()))
			}
		}
		return BackupInfo{}, err
	}
	return info, nil
}

// seedDataDir writes the raft state and the identity of a restored node.
func seedDataDir(cfg RestoreConfig, info BackupInfo) error {
	st, err := openBoltAndSnaps(cfg.DataDir)
	if err != nil {
		return err
	}
	defer func() { _ = st.close() }()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: raft.ServerAddress(cfg.PeerAddr)}}}
	_, tr := raft.NewInmemTransport("")
	defer func() { _ = tr.Close() }()
	sink, err := st.snaps.Create(raft.SnapshotVersionMax, info.Revision, info.Term, conf, info.Revision, tr)
	if err != nil {
		return fmt.Errorf("election: restore: create snapshot: %w", err)
	}
	rc, _, err := OpenBackupData(cfg.Backup)
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	_, err = io.Copy(sink, rc)
	_ = rc.Close()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("election: restore: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("election: restore: finish snapshot: %w", err)
	}
	// raft's stable-store key for the current term: a restored node
	// starts at the backup's term, so its first election makes it higher.
	if err := st.bolt.SetUint64([]byte("CurrentTerm"), info.Term); err != nil {
		return fmt.Errorf("election: restore: set term: %w", err)
	}
	return writeIdentity(filepath.Join(cfg.DataDir, identityFile), identity{ClusterID: cfg.ClusterID, NodeID: cfg.NodeID})
}

// emptyDir accepts a dir that does not exist or has no entries.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("election: read data dir: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("%w: %s holds %s; restore seeds a new, empty data dir", ErrDataDirNotEmpty, dir, entries[0].Name())
	}
	return nil
}
