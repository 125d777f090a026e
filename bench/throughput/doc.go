// Package throughput measures raft apply throughput in process, over Heartbeat's gRPC
// transport (rpc/transport) and over hashicorp/raft's own TCP transport
// (raft.NewTCPTransport), with everything else equal: the same raft.Config timing, the same
// stores, the same trivial FSM, the same load.
//
// One measurement builds a fresh cluster of Config.Nodes raft instances on 127.0.0.1 (":0"
// ports), bootstraps it, waits for a leader and then has Config.Appliers goroutines call
// raft.Apply on the leader until Config.Entries entries of Config.EntrySize bytes have
// committed. Compare alternates the two transports for Config.Rounds rounds and reports the
// median ops/s of each and their ratio (Heartbeat ÷ TCP); the target is ≥ 0.8.
//
// It exists because Heartbeat has no user write API yet: separate-process throughput cannot
// be compared. With Store "mem" (the default) the log lives in raft.InmemStore so that the
// transport, not fsync, is what is measured; "bolt" uses raft-boltdb files under Dir, as the
// nodes do, and then mostly measures the disk.
//
// Every raft instance and transport a measurement starts is shut down before it returns.
package throughput
