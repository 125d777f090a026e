#!/usr/bin/env bash
# Regenerates the Go code for every .proto under proto/ (one command:
# proto/gen.sh). Uses buf (its own compiler: no protoc needed) and the two Go
# plugins, all pinned and installed into .tools/bin on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh
tool buf protoc-gen-go protoc-gen-go-grpc
buf lint
buf generate
echo "generated: $(ls proto/*pb/*.pb.go | tr '\n' ' ')"
