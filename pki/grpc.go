package pki

import (
	"context"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// IdentityFromContext is the identity of the caller of a gRPC method served
// over TLS with a Store's ServerTLSConfig (credentials.NewTLS). ok is false
// when the call came without TLS or without a client certificate, or the
// certificate carries no identity; the server then refuses what needs one.
func IdentityFromContext(ctx context.Context) (id Identity, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found {
		return Identity{}, false
	}
	info, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS {
		return Identity{}, false
	}
	id, err := PeerIdentity(info.State)
	return id, err == nil
}
