package heartbeatpb

// MaxResponseBytes is the largest message a node sends on the client port
// (its gRPC MaxSendMsgSize) and the largest the Go client and the node's own
// HTTP gateway accept (MaxCallRecvMsgSize): 512 MiB, room for a
// ListResources answer of a state at the largest --quota-bytes with
// --max-resources owners beside it. A larger answer fails on the server with
// ResourceExhausted, never half-read.
const MaxResponseBytes = 512 << 20
