// Package authz decides who calls a node and what they may do: the one
// enforcement point of the client port and the HTTP port.
//
// # Who calls (authentication)
//
// A caller proves who it is in one of three ways, tried in this order:
//
//   - a client certificate (mutual TLS on the client gRPC port or on the
//     HTTP port), verified against the cluster CA by crypto/tls before the
//     call arrives; its identity and roles are in its SAN URIs (package pki:
//     heartbeat://<cluster>/client/<name>, heartbeat://<cluster>/role/<role>).
//     A node's certificate (heartbeat://<cluster>/node/<id>) is an admin:
//     nodes manage each other.
//   - a bearer token (gRPC metadata "authorization: Bearer <token>", the HTTP
//     Authorization header), for callers that cannot do mutual TLS. Tokens
//     come from a file of "<name> <role> <token>" lines; only their SHA-256
//     is kept in memory and they are compared in constant time.
//   - nothing: refused with Unauthenticated (HTTP 401), unless the node runs
//     open (Config.Open: no TLS and no tokens, allowed on loopback or with
//     --insecure), where every caller is an admin.
//
// # What they may do (authorization)
//
// Every RPC of the client port has one required role in Policy: read (status,
// members, leader, resources, assignments, leases, every watch), write
// (register and delete resources, the application's heartbeat), admin
// (membership changes, drain, priority, step-down, transfer, leave). admin
// includes write includes read. A method missing from the table is refused
// (default deny; a test checks that every Coordinator method is listed). The
// gRPC health service is public, so that probes need no credentials.
//
// Interceptors (Authorizer.UnaryInterceptor, StreamInterceptor) apply it to
// every gRPC call. The HTTP gateway is a client of the node's own client port,
// so HTTP calls pass the same interceptor: the gateway forwards the caller's
// Authorization header, and for a caller that presented a client certificate
// over HTTPS it forwards the verified identity in metadata that the
// interceptor believes only from the node itself (a connection whose
// certificate names this node's own id). The few HTTP routes with no RPC
// (metrics, profiles) ask the same Authorizer (AuthorizeHTTP).
//
// A refusal changes nothing, is logged (rate-limited) and counted in
// heartbeat_auth_refused_total{reason,method}.
package authz
