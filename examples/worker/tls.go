package main

import (
	"crypto/tls"
	"errors"

	"github.com/heartbeat-sidecar/heartbeat/pki"
)

// TLSConfig is the client TLS configuration of a worker in a cluster with
// mutual TLS: it presents the certificate in certFile and keyFile (a client
// certificate of `heartbeat tls init`, role write: app heartbeats and
// reads) and accepts a sidecar whose chain verifies against the CA bundle in
// caFile and whose certificate names a node of that cluster. The host name
// is not checked (sidecars are dialed by IP; see package pki). The files are
// read again when they change, so a rotated certificate needs no restart.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, errors.New("worker: TLS needs --cacert, --cert and --key")
	}
	store, err := pki.NewStore(pki.StoreOptions{CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		return nil, err
	}
	return store.ClientTLSConfig(nil), nil
}
