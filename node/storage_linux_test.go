//go:build linux

package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// TestReadyzStorageAlarm: a one-node cluster whose data dir is on a tmpfs
// that fills up answers /readyz 503 with "[-]storage" (the failed append
// also costs it its leadership: it stands for no election), and 200 with
// "[+]storage ok" again once space is freed, leading again. Skipped only
// where a tmpfs cannot be mounted (election's injected-fault tests cover the
// alarm itself).
func TestReadyzStorageAlarm(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d", 16<<20)); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	c := testcluster.Start(t, 1, testcluster.Options{Tweak: func(cfg *node.Config) {
		cfg.DataDir = filepath.Join(mnt, cfg.ID)
	}})
	n := c.Node("n1")
	readyz := "http://" + n.HTTPAddr() + "/readyz"

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 4096); ; {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	_ = f.Close()
	// An empty membership command: a no-op if it were ever applied; 1 MiB
	// of it needs pages bolt does not have.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Election().Apply(ctx, make([]byte, 1<<20)); err == nil {
		t.Fatal("a 1 MiB append on a full disk succeeded")
	}
	testwait.Eventually(t, waitTimeout, "/readyz 503 with [-]storage", func() (bool, string) {
		code, body := httpDo(t, http.MethodGet, readyz)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "[-]storage: election: storage alarm"), fmt.Sprintf("%d %s", code, body)
	})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, waitTimeout, "/readyz 200 with [+]storage ok", func() (bool, string) {
		code, body := httpDo(t, http.MethodGet, readyz)
		return code == http.StatusOK && strings.Contains(body, "[+]storage ok"), fmt.Sprintf("%d %s", code, body)
	})
}
