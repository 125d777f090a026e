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
