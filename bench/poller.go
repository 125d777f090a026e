package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// lenient decodes the node's answers (protojson), ignoring fields a newer
// node may add.
var lenient = protojson.UnmarshalOptions{DiscardUnknown: true}

// Target is one node to poll: its id, its HTTP address (host:port for plain HTTP, or a base
// URL such as https://host:port: NodeSpec.HTTPBase) and, for HTTPS, the client TLS
// configuration (nil: plain HTTP).
type Target struct {
	ID       string
	HTTPAddr string
	TLS      *tls.Config
}

// NewStatusClient returns a keep-alive HTTP client for status polls of one node: one idle
// connection is kept, and every request is bounded by timeout (a stopped process never
// answers, so the timeout is what ends its polls).
func NewStatusClient(timeout time.Duration) *http.Client {
	return NewHTTPClient(timeout, nil)
}

// NewHTTPClient is NewStatusClient for HTTPS with tlsCfg (nil: plain HTTP): HTTP/1.1 on one
// kept-alive connection, so that a TLS handshake happens once per connection, not per poll.
// Session resumption is not used (the nodes disable session tickets).
func NewHTTPClient(timeout time.Duration, tlsCfg *tls.Config) *http.Client {
	tr := &http.Transport{
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	if tlsCfg != nil {
		tr.TLSClientConfig = tlsCfg.Clone()
		tr.TLSHandshakeTimeout = timeout
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// nodeURL joins a node's HTTP address and a path: addr is host:port (plain HTTP) or a base
// URL with its scheme (https://host:port).
func nodeURL(addr, path string) string {
	if strings.Contains(addr, "://") {
		return addr + path
	}
	return "http://" + addr + path
}

// FetchStatus does one GET addr/v1/status?stale (the node's own view, at once: a consistent
// read would wait for a leader, and the poller watches nodes that have none) and decodes the
// reply. addr is host:port (plain HTTP) or a base URL (https://host:port, with a client whose
// transport has the TLS configuration: NewHTTPClient).
func FetchStatus(ctx context.Context, c *http.Client, addr string) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nodeURL(addr, "/v1/status?stale"), nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Status{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("status %s: %s", resp.Status, body)
	}
	var st heartbeatpb.GetStatusResponse
	if err := lenient.Unmarshal(body, &st); err != nil {
		return Status{}, fmt.Errorf("decode status: %w", err)
	}
	return statusFromProto(&st), nil
}

// Poller polls every target's /v1/status concurrently, one goroutine per target, each on its
// own keep-alive connection, and records every outcome. It starts polling in NewPoller and
// stops in Close, which waits for its goroutines; a Poller is not reusable after Close.
//
// A poll that outlives the interval delays that target's next poll (missed ticks are
// dropped, never queued), so a stopped node is polled once per timeout.
type Poller struct {
	targets []Target
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	latest  map[string]Sample
	samples []Sample // since the last Reset
	changed chan struct{}
}

// NewPoller starts polling targets every interval with the given per-request timeout.
func NewPoller(targets []Target, interval, timeout time.Duration) *Poller {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Poller{
		targets: targets,
		cancel:  cancel,
		latest:  make(map[string]Sample, len(targets)),
		changed: make(chan struct{}),
	}
	for _, t := range targets {
		p.wg.Add(1)
		go p.loop(ctx, t, interval, timeout)
	}
	return p
}

func (p *Poller) loop(ctx context.Context, t Target, interval, timeout time.Duration) {
	defer p.wg.Done()
	client := NewHTTPClient(timeout, t.TLS)
	defer client.CloseIdleConnections()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		sent := time.Now()
		st, err := FetchStatus(ctx, client, t.HTTPAddr)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		p.record(Sample{Node: t.ID, At: now, OK: err == nil, Status: st, Latency: now.Sub(sent)})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *Poller) record(s Sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latest[s.Node] = s
	p.samples = append(p.samples, s)
	close(p.changed)
	p.changed = make(chan struct{})
}

// Latest returns a copy of each target's most recent sample.
func (p *Poller) Latest() map[string]Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Sample, len(p.latest))
	for k, v := range p.latest {
		out[k] = v
	}
	return out
}

// Reset drops the recorded samples except each target's latest one, which starts the new
// record (so a victim that was slow to answer still has its last answer in it). Call it
// before a fault so that the samples then cover only that fault.
func (p *Poller) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = p.samples[:0:0]
	for _, s := range p.latest {
		p.samples = append(p.samples, s)
	}
}

// Samples returns a copy of the samples recorded since the last Reset.
func (p *Poller) Samples() []Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Sample(nil), p.samples...)
}

// WaitFor blocks until cond holds on the latest samples, re-checking at every new sample, or
// until ctx ends (then it returns ctx's error).
func (p *Poller) WaitFor(ctx context.Context, cond func(map[string]Sample) bool) error {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if cond(p.Latest()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Close stops polling and waits for the poll goroutines to return.
func (p *Poller) Close() {
	p.cancel()
	p.wg.Wait()
}
