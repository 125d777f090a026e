// Package faultnet is a test-only fault injector for rpc/transport: it wraps real
// gRPC transports so tests can cut, delay or drop traffic per directed pair of nodes,
// isolate a node and heal, while everything else (serialization, connections, raft's
// own timeouts) stays real.
//
//	net := faultnet.New()
//	a := net.Wrap(realA) // same method set as *transport.Transport
//	net.Cut(a.LocalAddr(), b.LocalAddr())
//
// Faults act on the sending side, so every node of a test cluster must be wrapped by
// the same Network. For a request from → to:
//
//   - from → to cut (or the message dropped): the request is not sent; the call blocks
//     until its deadline (HeartbeatTimeout for heartbeats, RPCTimeout otherwise, or the
//     ctx given) and fails with ErrLinkDown;
//   - to → from cut (or dropped): the request is delivered and handled, the reply is
//     lost: the call blocks until its deadline and fails with ErrReplyLost;
//   - a delay holds the message before it goes on; one that would end past the call's
//     deadline fails it with ErrDeadline.
//
// Pipelined appends through a cut complete with an error future; InstallSnapshot
// through a cut fails. A held stream (Hold) through a cut link stays blocked silently
// until its ctx ends and returns nil, since a partition closes no connection; the
// wrapper also hides a real stream that broke while the link was cut. Reachable and
// ConfirmLost through a cut time out. Heal and HealAll restore everything at once.
//
// Acks of a wrapped transport are recorded by the wrapper, from the replies that made
// it through, so the leader lease computed from them sees the partition.
//
// A crash is not a fault here: close the real transport (Close of the wrapper does).
package faultnet
