//go:build tools

// Package deps pins the module's direct dependencies while the packages that use
// them are being written. It is never built.
package deps

import (
	_ "github.com/hashicorp/go-hclog"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
	_ "google.golang.org/grpc"
)
