//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// statusJSON decodes GET /v1/status (a GetStatusResponse in protojson),
// ignoring fields a newer node may add.
var statusJSON = protojson.UnmarshalOptions{DiscardUnknown: true}

// RecorderTarget says where to find one node from the host.
type RecorderTarget struct {
	Node       string
	HTTPAddr   string // host:port of its HTTP server
	ClientAddr string // host:port of its client gRPC server
}

// Recorder follows every node for the whole run: it polls /v1/status every
// Poll (a failed poll is recorded as RoleDown, or RoleUnreachable on a
// timeout) and keeps a WatchLeader stream open, reopening it whenever it
// breaks (a restarted node is followed again as soon as it serves). It owns
// two goroutines per node; Close stops and waits for them.
type Recorder struct {
	h      *History
	poll   time.Duration
	tmo    time.Duration
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  []*grpc.ClientConn
	tls    *ClusterTLS // nil: plaintext

	mu     sync.Mutex
	latest map[string]Event // latest status observation per node
	down   map[string]bool  // nodes the driver has stopped
}

// SetDown tells the recorder that the driver stopped (down=true) or started
// node: while stopped, failed polls are recorded as RoleDown rather than
// RoleUnreachable (a dead container's address times out like a paused one).
// It changes only how a failure is labelled, never what a node said.
func (r *Recorder) SetDown(node string, down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down[node] = down
}

// StartRecorder starts following targets into h. With ctls (nil:
// plaintext) the status polls are https and the watch streams TLS, both
// with the admin client certificate, and each connection must reach the
// node it follows (its certificate names that node).
func StartRecorder(h *History, targets []RecorderTarget, poll, timeout time.Duration, ctls *ClusterTLS) (*Recorder, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{h: h, poll: poll, tmo: timeout, cancel: cancel, latest: map[string]Event{}, down: map[string]bool{}, tls: ctls}
	for _, t := range targets {
		creds := insecure.NewCredentials()
		if ctls != nil {
			creds = credentials.NewTLS(ctls.ConfigFor(t.Node))
		}
		conn, err := grpc.NewClient(t.ClientAddr,
			grpc.WithTransportCredentials(creds),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5, MaxDelay: 250 * time.Millisecond},
				MinConnectTimeout: 500 * time.Millisecond,
			}))
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("chaos: client for %s: %w", t.Node, err)
		}
		r.conns = append(r.conns, conn)
		r.wg.Add(2)
		go r.pollLoop(ctx, t)
		go r.watchLoop(ctx, t.Node, heartbeatpb.NewCoordinatorClient(conn))
	}
	return r, nil
}

// Close stops following and waits for the goroutines. Safe to call twice.
func (r *Recorder) Close() {
	r.cancel()
	r.wg.Wait()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
}

// Latest returns node's latest status observation.
func (r *Recorder) Latest(node string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.latest[node]
	return e, ok
}

func (r *Recorder) pollLoop(ctx context.Context, t RecorderTarget) {
	defer r.wg.Done()
	client := &http.Client{Timeout: r.tmo, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true,
		TLSClientConfig: r.tls.ConfigFor(t.Node)}} // chain and node id, not the host name (nodes are dialed by IP)
	defer client.CloseIdleConnections()
	url := r.tls.Scheme() + "://" + t.HTTPAddr + "/v1/status?stale" // the node's own view, at once
	tick := time.NewTicker(r.poll)
	defer tick.Stop()
	for {
		e := r.pollOnce(ctx, client, url, t.Node)
		if ctx.Err() != nil {
			return
		}
		r.h.Observe(e)
		r.mu.Lock()
		r.latest[t.Node] = e
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *Recorder) pollOnce(ctx context.Context, client *http.Client, url, node string) Event {
	sent := r.h.Since()
	e := Event{Node: node, Source: SourceStatus}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	var st heartbeatpb.GetStatusResponse
	if err == nil {
		var resp *http.Response
		resp, err = client.Do(req)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			if err == nil {
				err = statusJSON.Unmarshal(body, &st)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
			}
		}
	}
	e.At = r.h.Since()
	e.Until = e.At
	e.Latency = e.At - sent
	if err != nil {
		var ne net.Error
		r.mu.Lock()
		stopped := r.down[node]
		r.mu.Unlock()
		if !stopped && (errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)) {
			e.Role = RoleUnreachable
		} else {
			e.Role = RoleDown
		}
		// Why, for the report and for a "cluster never formed" message
		// (the HTTP status and body's start, or the dial error).
		e.Err = err.Error()
		if len(e.Err) > 160 {
			e.Err = e.Err[:160]
		}
		return e
	}
	e.Role = Role(heartbeatpb.Short(st.GetState()))
	e.Term, e.Leader, e.Token, e.IsSelf, e.CommitIndex = st.GetTerm(), st.GetLeader().GetNodeId(), st.GetFencingToken(), st.GetIsLeader(), st.GetCommitIndex()
	return e
}

func (r *Recorder) watchLoop(ctx context.Context, node string, client heartbeatpb.CoordinatorClient) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		r.watchOnce(ctx, node, client)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *Recorder) watchOnce(ctx context.Context, node string, client heartbeatpb.CoordinatorClient) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.WatchLeader(ctx, &heartbeatpb.WatchLeaderRequest{Consistency: heartbeatpb.Consistency_CONSISTENCY_STALE}, grpc.WaitForReady(true))
	if err != nil {
		return
	}
	// An event was sent at some instant between the arrival of the one
	// before it (or the stream's opening) and its own arrival: after a cut
	// (net-disconnect), TCP delivers what the node sent before the cut in
	// one burst. Latency carries that bound, as a status poll's round trip
	// does.
	prev := r.h.Since()
	for {
		m, err := stream.Recv()
		if err != nil {
			return
		}
		at := r.h.Since()
		r.h.Observe(Event{Node: node, Source: SourceWatch, At: at, Until: at, Latency: at - prev, Term: m.GetLeadership().GetTerm(),
			Leader: m.GetLeadership().GetLeader().GetNodeId(), Token: m.GetLeadership().GetFencingToken(), IsSelf: m.GetLeadership().GetIsLeader()})
		prev = at
	}
}
