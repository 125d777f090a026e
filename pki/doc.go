// Package pki gives a Heartbeat cluster its certificates without a PKI
// team: it makes a cluster's CA and the certificates of its nodes and
// clients (Init, `heartbeat tls init`), reads who a certificate speaks for
// (IdentityOf), and serves a certificate, key and CA bundle from files to
// TLS servers and clients, reloading them when the files are replaced
// (Store).
//
// # Trust model
//
// One CA per cluster. Every node and every client is given ca.pem, the
// only trust anchor: a peer is trusted when its chain verifies against the
// CA bundle, whatever the system roots say. The CA's key (ca-key.pem) is
// needed only to issue certificates and belongs off the nodes. The CA
// carries the URI heartbeat://<cluster> and signs leaves only (path length
// zero). The TLS configs of a Store speak TLS 1.3 only: every party is this
// code.
//
// # Identity by SAN URI
//
// A certificate says who it speaks for in its SAN URIs:
//
//	heartbeat://<cluster>/node/<id>       a node (server and client auth)
//	heartbeat://<cluster>/client/<name>   a client (client auth only)
//	heartbeat://<cluster>/role/<role>     a client's role: read, write, admin
//
// IdentityOf reads exactly one node or client URI and any role URIs, all of
// one cluster; anything else is an error (ErrNoIdentity, ErrTwoIdentities,
// ErrBadCluster, ErrUnknownRole, ErrBadName). Roles are ordered: admin
// implies write, write implies read (Role.Implies, Identity.Has). The
// configs of a Store refuse, during the handshake, a peer whose chain does
// not verify against the current CA pool (with the extended key usage of
// its side), or whose identity is of another cluster; the client side also
// wants a node and may want a given one (ExpectNode). What a verified peer
// may do is then the server's decision, per call: IdentityFromContext
// gives a gRPC method its caller's identity and roles.
//
// # Why host names are not checked
//
// Nodes are dialed by whatever address the membership or the command line
// has: an IP, a container name, a load balancer, 127.0.0.1 behind a port
// forward. Checking the address against the DNS and IP SANs would fail for
// some of them and prove little: the CA signs only this cluster's members,
// so the question is which member answered, not which name was dialed. So
// ClientTLSConfig sets InsecureSkipVerify (which turns off crypto/tls's own
// chain-and-host-name check only) and VerifyConnection verifies the full
// chain with x509.Verify against the current pool, then the identity: the
// cluster and, when the caller knows it, the node id (ExpectNode). The
// DNS and IP SANs Init writes (node id, localhost, --hosts, 127.0.0.1, ::1)
// are for other TLS clients, such as curl against the HTTP gateway.
//
// # Clients without a certificate
//
// A caller that proves who it is with a bearer token (package authz) has no
// certificate, yet must still know it talks to a node of its cluster and
// not to whoever took the address: a Store made of the CA bundle alone
// (StoreOptions without CertFile and KeyFile) verifies servers as any
// other does and presents nothing. Its cluster is the one its CAs'
// heartbeat://<cluster> URIs name (they must name one, and only one).
// Such a store cannot serve: its server configs fail every handshake
// (ErrNoCertificate). The CA bundle is reloaded like any file of a Store.
//
// # Rotation by file replacement
//
// A Store looks at its three files (size, modification time, inode) at most
// every CheckInterval, when a handshake asks for the certificate or the
// pool; there is no goroutine. Files modified in the last two seconds are
// also compared by content, since a coarse file system clock can leave a
// quick in-place rewrite of the same size with the same stamp. Changed
// files are read and checked as a whole
// (key matches certificate, certificate valid under the new bundle, same
// identity) and, if good, used from the next handshake on; established
// connections are not touched. Session tickets are off, so every connection
// is verified against the pool of its time. Bad files are refused and the
// previous material stays in use (LastError, OnReload). To rotate:
// write the new files beside the old ones and rename them over (or simply
// overwrite them; a half-written set is refused and picked up once
// complete). To replace the CA, first give every node a bundle with both
// CAs, then the new certificates, then a bundle with the new CA only.
//
// # Files
//
// Init writes, in one directory (0700 when it creates it): ca.pem and
// ca-key.pem; <node>.pem and <node>-key.pem per node; <client>.pem and
// <client>-key.pem per client. Keys are ECDSA P-256 in PKCS #8 (0600),
// certificates PEM (0644). The CA lives 10 years and leaves 1 year by
// default. Init run again reuses the CA in the directory and keeps the
// leaves already there, so it adds nodes and clients; InitOptions.Force
// makes a new CA and reissues what it is asked for. The client named
// client with role admin gives client.pem and client-key.pem, the files the
// scripts hand to the CLI.
package pki
