// Package gateway is the HTTP/JSON face of the Coordinator gRPC API
// (heartbeat.v1.Coordinator), driven by the proto descriptors: one route
// table (routes.go) maps each HTTP method and path onto an RPC, and the rest
// follows from the RPC's request and response messages.
//
// A node mounts it on its HTTP port: gateway.New(gateway.Config{Conn: cc})
// returns an http.Handler whose every call is a gRPC call on cc, a
// connection to the node's own client port, so the interceptors and limits
// of the gRPC server (message sizes; the authorization of issue #12) apply
// to HTTP exactly as to gRPC, and both faces share one implementation of
// each call — the watches included.
//
// # A request
//
// Path variables ("/v1/members/{node_id}/priority") and query parameters
// ("?node_id=n2&consistency=stale") fill request fields by their proto
// names through protoreflect: scalars, bools (no value is true), enums by
// value name in any case with or without the enum's prefix ("stale",
// "CONSISTENCY_STALE"), repeated fields (a parameter given several times).
// An unknown parameter is a 400. ?stale is kept as the short form of
// consistency=stale. A route with a body decodes it with protojson into the
// request message (unknown fields are a 400; at most Config.MaxBodyBytes
// and Config.MaxBodyItems per list, counted while the body streams in:
// more is a 413);
// a path variable then sets its field (a body that says otherwise is a
// 400).
//
// # An answer
//
// The response message in protojson (proto field names, every field,
// 64-bit integers as strings, enums by name, Timestamp and Duration as
// strings). A response with a `read` field of type heartbeat.v1.ReadInfo
// also sets the X-Heartbeat-* freshness headers, one per ReadInfo field. An
// error is a JSON ErrorBody with the HTTP status of its gRPC code (one
// table: HTTPStatus); an unknown path is a JSON 404, a known path with
// another method a JSON 405 with Allow.
//
// # Watches
//
// A server-streaming RPC's route (Route.SSE) answers with server-sent
// events: it opens the gRPC stream and writes each message as one event
// (sse.go). The id: of an event is its revision where the route says so,
// and Last-Event-ID resumes the stream (Route.SSE.ResumeField).
//
// # The OpenAPI document
//
// Document generates an OpenAPI 3.0 document from the same table and the
// message descriptors; `go generate ./gateway/` writes it to
// docs/openapi.json, and the gateway serves it at GET /v1/openapi.json. The
// tests check that the committed file is the generated one, that every
// documented route answers on a live node and that every route the server
// answers is documented. The node's own routes (/healthz, /readyz,
// /metrics, /debug/pprof/) are entries of the same table with a handler the
// node passes in (Config.Handlers).
//
// # Why not grpc-gateway
//
// grpc-gateway v2 (github.com/grpc-ecosystem/grpc-gateway) generates the
// same kind of reverse proxy, and was weighed against this package:
//
//   - its protoc-gen-openapiv2 emits only Swagger 2.0; OpenAPI 3 is an open
//     issue there (grpc-ecosystem/grpc-gateway#441), and the issue asks for
//     OpenAPI 3;
//   - its routes are google.api.http annotations in the proto, which need
//     the googleapis annotation protos (google/api/annotations.proto,
//     http.proto) at generation time, which this build cannot fetch, and
//     would add a generated file per service plus a runtime dependency;
//   - our reads need the X-Heartbeat-* freshness headers taken from the
//     answer, ?stale, and server-sent events for the watches (grpc-gateway
//     streams newline-delimited JSON), all of which would be custom
//     marshalers and middleware around it anyway.
//
// So this is a thin generic layer instead: a few hundred lines driven by
// the proto descriptors, where a new RPC needs one route entry.
package gateway

//go:generate go run ./cmd/openapi -o ../docs/openapi.json
