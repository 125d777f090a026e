package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// http2ClientStart is what an HTTP/2 client sends first: the connection preface and an
// empty SETTINGS frame (RFC 9113 §3.4).
var http2ClientStart = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
	"\x00\x00\x00" + // payload length 0
	"\x04" + // type SETTINGS
	"\x00" + // flags: none
	"\x00\x00\x00\x00") // stream 0

// HTTP/2 frame header fields (RFC 9113 §4.1, §6.5).
const (
	frameHeaderLen    = 9
	frameTypeSettings = 0x4
	flagSettingsAck   = 0x1
	settingLen        = 6
	streamIDMask      = 1<<31 - 1
)

// longAgo is a deadline in the past: setting it makes blocked I/O on a conn return.
var longAgo = time.Unix(1, 0)

// Reachable tells whether a live server answers at target, within ctx: it dials a
// fresh TCP connection (no gRPC state, so a restarted or dead peer is seen at once),
// writes the HTTP/2 client preface and an empty SETTINGS frame, and requires the
// server's first frame, a SETTINGS frame, to arrive before ctx ends. nil: a live
// HTTP/2 server (every gRPC server) answered.
//
// A TCP accept alone proves nothing: while a killed process's descriptors are being
// torn down, the kernel still completes handshakes into the backlog of its listener,
// and a wedged process's kernel does so indefinitely. A refused dial, a reset or EOF
// before the SETTINGS frame, a first frame of another kind, or ctx ending first all
// return an error; the last three wrap ErrNotServing. ctx should carry a deadline: a
// peer whose kernel accepts but whose process never answers blocks Reachable until ctx
// ends. After Close it returns ErrTransportShutdown.
func (t *Transport) Reachable(ctx context.Context, target raft.ServerAddress) error {
	if t.closeCtx.Err() != nil {
		return ErrTransportShutdown
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.closeCtx, cancel)
	defer stop()
	err := probeHTTP2(pctx, string(target), t.cfg.ClientTLS)
	switch {
	case err == nil:
		return nil
	case t.closeCtx.Err() != nil:
		return ErrTransportShutdown
	}
	return fmt.Errorf("transport: reach %s: %w", target, err)
}

// probeHTTP2 dials addr and waits, within ctx, for the SETTINGS frame every HTTP/2
// server sends first; see Reachable. With tlsCfg the connection is TLS first (the
// handshake, answered by the process itself, already shows it alive).
func probeHTTP2(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	conn := raw
	defer func() { _ = conn.Close() }()
	if tlsCfg != nil {
		cfg := tlsCfg.Clone()
		cfg.NextProtos = []string{"h2"}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("%w: TLS handshake: %w", ErrNotServing, err)
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancellation without a deadline: unblock the write or read below.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(longAgo) })
	defer stop()
	notServing := func(err error) error {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return fmt.Errorf("%w: %w", ErrNotServing, err)
	}
	if _, err := conn.Write(http2ClientStart); err != nil {
		return notServing(err)
	}
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("connection closed before the server's SETTINGS frame: %w", err)
		}
		return notServing(err)
	}
	length := uint32(hdr[0])<<16 | uint32(hdr[1])<<8 | uint32(hdr[2])
	typ, flags, stream := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&streamIDMask
	if typ != frameTypeSettings || flags&flagSettingsAck != 0 || stream != 0 || length%settingLen != 0 {
		return fmt.Errorf("%w: first frame is not an HTTP/2 SETTINGS frame (header % x)", ErrNotServing, hdr)
	}
	return nil
}
