package election

import (
	"bytes"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestTermLoggerAddsNodeAndTerm(t *testing.T) {
	var buf bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true, Level: hclog.Trace})
	var term atomic.Uint64
	term.Store(4)
	l := newTermLogger(base, "n7", term.Load)

	l.Info("one", "k", "v")
	term.Store(5)
	l.Named("raft").With("x", 1).Warn("two")

	dec := json.NewDecoder(&buf)
	want := []struct {
		msg  string
		term float64
	}{{"one", 4}, {"two", 5}}
	for _, w := range want {
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if line["@message"] != w.msg || line["node"] != "n7" || line["term"] != w.term {
			t.Fatalf("line %v: want message %q with node n7 and term %v", line, w.msg, w.term)
		}
	}
}

// TestTermLoggerRenamesClashingKeys: raft's own "node" and "term" arguments
// do not replace the node id and current term (JSON keeps the last key).
func TestTermLoggerRenamesClashingKeys(t *testing.T) {
	var buf bytes.Buffer
	base := hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true, Level: hclog.Trace})
	l := newTermLogger(base, "n3", func() uint64 { return 2 })
	l.Info("entering candidate state", "node", "Node at 127.0.0.1:7430 [Candidate]", "term", 3)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["node"] != "n3" || line["term"] != float64(2) ||
		line["raft_node"] != "Node at 127.0.0.1:7430 [Candidate]" || line["raft_term"] != float64(3) {
		t.Errorf("line %v: want node n3, term 2, raft_node and raft_term kept", line)
	}
}
