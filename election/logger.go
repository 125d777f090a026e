package election

import (
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
)

// termLogger wraps an hclog.Logger and adds "node" and the current "term" to
// every line. The term is read on each call (term is an atomic read), so raft's
// own lines carry the term they were written in. Format and level belong to
// the wrapped logger.
type termLogger struct {
	inner hclog.Logger
	node  string
	term  func() uint64
}

var _ hclog.Logger = (*termLogger)(nil)

func newTermLogger(inner hclog.Logger, node string, term func() uint64) *termLogger {
	return &termLogger{inner: inner, node: node, term: term}
}

// args puts "node" and "term" first. A caller's own "node" or "term" (raft
// logs "node" as a description of itself and "term" as, for example, the
// term a candidate enters) is renamed "raft_node" / "raft_term", so that a
// line never has two keys of one name: JSON output keeps only the last one,
// which would hide the node id or the current term.
func (l *termLogger) args(args []any) []any {
	out := make([]any, 0, len(args)+4)
	out = append(out, "node", l.node, "term", l.term())
	for i, a := range args {
		if i%2 == 0 {
			switch a {
			case "node":
				a = "raft_node"
			case "term":
				a = "raft_term"
			}
		}
		out = append(out, a)
	}
	return out
}

// The methods below implement hclog.Logger by delegating to inner.

func (l *termLogger) Log(level hclog.Level, msg string, args ...any) {
	l.inner.Log(level, msg, l.args(args)...)
}
func (l *termLogger) Trace(msg string, args ...any) { l.inner.Trace(msg, l.args(args)...) }
func (l *termLogger) Debug(msg string, args ...any) { l.inner.Debug(msg, l.args(args)...) }
func (l *termLogger) Info(msg string, args ...any)  { l.inner.Info(msg, l.args(args)...) }
func (l *termLogger) Warn(msg string, args ...any)  { l.inner.Warn(msg, l.args(args)...) }
func (l *termLogger) Error(msg string, args ...any) { l.inner.Error(msg, l.args(args)...) }
func (l *termLogger) IsTrace() bool                 { return l.inner.IsTrace() }
func (l *termLogger) IsDebug() bool                 { return l.inner.IsDebug() }
func (l *termLogger) IsInfo() bool                  { return l.inner.IsInfo() }
func (l *termLogger) IsWarn() bool                  { return l.inner.IsWarn() }
func (l *termLogger) IsError() bool                 { return l.inner.IsError() }
func (l *termLogger) ImpliedArgs() []any            { return l.inner.ImpliedArgs() }
func (l *termLogger) Name() string                  { return l.inner.Name() }
func (l *termLogger) SetLevel(level hclog.Level)    { l.inner.SetLevel(level) }
func (l *termLogger) GetLevel() hclog.Level         { return l.inner.GetLevel() }

func (l *termLogger) With(args ...any) hclog.Logger {
	return &termLogger{inner: l.inner.With(args...), node: l.node, term: l.term}
}

func (l *termLogger) Named(name string) hclog.Logger {
	return &termLogger{inner: l.inner.Named(name), node: l.node, term: l.term}
}

func (l *termLogger) ResetNamed(name string) hclog.Logger {
	return &termLogger{inner: l.inner.ResetNamed(name), node: l.node, term: l.term}
}

// StandardLogger and StandardWriter go to the wrapped logger: lines written
// through them carry the node id (see New) but not the term. raft's core does
// not use them.
func (l *termLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return l.inner.With("node", l.node).StandardLogger(opts)
}

func (l *termLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return l.inner.With("node", l.node).StandardWriter(opts)
}
