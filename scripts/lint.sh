#!/usr/bin/env bash
# Static checks the test command runs before the tests: buf lint (the protos
# against buf's STANDARD rules, buf.yaml), a check that the generated code is
# what proto/gen.sh makes of the protos, and golangci-lint (.golangci.yml:
# vet, staticcheck, errcheck, gofmt/goimports, ...). Tools are pinned in
# scripts/tools.sh and installed into .tools/bin on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/tools.sh
tool buf protoc-gen-go protoc-gen-go-grpc golangci-lint

echo "== buf lint"
buf lint

echo "== generated protobuf code is up to date"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
buf generate --output "$tmp"
for f in proto/*pb/*.pb.go; do
	if ! cmp -s "$f" "$tmp/$f"; then
		echo "$f differs from what proto/gen.sh generates: run proto/gen.sh and commit" >&2
		exit 1
	fi
done

echo "== golangci-lint"
golangci-lint run ./...
