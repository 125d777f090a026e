# Sourced by scripts that need the project's pinned developer tools. `tool
# NAME...` installs each named tool into .tools/bin (once; the Go module
# proxy serves them) and puts that directory first on PATH.
HEARTBEAT_TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/bin"
export PATH="$HEARTBEAT_TOOLS:$PATH:/usr/local/go/bin"

# The pinned versions: change them here only.
declare -A HEARTBEAT_TOOL_PKG=(
	[buf]=github.com/bufbuild/buf/cmd/buf@v1.75.0
	[protoc-gen-go]=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	[protoc-gen-go-grpc]=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
	[golangci-lint]=github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
)

tool() {
	local name pkg
	for name in "$@"; do
		pkg="${HEARTBEAT_TOOL_PKG[$name]:?unknown tool $name}"
		if [ ! -x "$HEARTBEAT_TOOLS/$name" ] || [ "$(cat "$HEARTBEAT_TOOLS/.$name.version" 2>/dev/null)" != "$pkg" ]; then
			echo "== installing $pkg" >&2
			GOBIN="$HEARTBEAT_TOOLS" go install "$pkg"
			echo "$pkg" > "$HEARTBEAT_TOOLS/.$name.version"
		fi
	done
}
