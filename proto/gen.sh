#!/usr/bin/env bash
# Regenerates the Go code for every .proto under proto/. Needs protoc (Debian's
# protobuf-compiler) and the two Go plugins; it installs the plugins if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler" >&2; exit 1; }
command -v protoc-gen-go >/dev/null || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
command -v protoc-gen-go-grpc >/dev/null || go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
for dir in proto/*/; do
  ls "$dir"*.proto >/dev/null 2>&1 || continue
  protoc -I proto --go_out=. --go_opt=module=github.com/heartbeat-sidecar/heartbeat \
    --go-grpc_out=. --go-grpc_opt=module=github.com/heartbeat-sidecar/heartbeat \
    "$dir"*.proto
done
echo "generated: $(ls proto/*/*.pb.go | tr '\n' ' ')"
