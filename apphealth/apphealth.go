package apphealth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// Pacing of the record loop.
const (
	// retryAfter is how soon a failed SetAppHealth commit is retried when
	// retry.Retryable says it may pass.
	retryAfter = 50 * time.Millisecond
	// recheck is how often, with nothing due, the watcher compares the
	// application's health with the member record anyway (a record can
	// change under it: a restore, another node's write). A lapsing push TTL
	// and a changed poll result are acted on at once, not on this period.
	recheck = time.Second
	// writeTimeout bounds one SetAppHealth commit and one hand-off.
	writeTimeout = 2 * time.Second
	// transferEvery spaces leadership hand-offs of a leader whose
	// application is unhealthy (a failed hand-off is retried this often).
	transferEvery = 2 * time.Second
)

// ErrInvalidConfig wraps every Config.Validate failure.
var ErrInvalidConfig = errors.New("apphealth: invalid config")

// Config configures a Watcher.
type Config struct {
	// SelfID is this node's member id. Required.
	SelfID string
	// URL, when set, is polled every Interval (see CheckURL for what is
	// accepted). Empty: no pull source.
	URL string
	// OwnAddrs are the node's configured addresses (host:port); a URL on
	// one of their hosts is accepted besides loopback.
	OwnAddrs []string
	// Interval is the poll period and the timeout of one poll. Shorter
	// notices a sick application sooner and costs a request per period.
	// Default 1s, at least 50ms.
	Interval time.Duration
	// Logger; nil: no logs.
	Logger hclog.Logger
}

// DefaultConfig returns the defaults (SelfID still to set).
func DefaultConfig() Config { return Config{Interval: time.Second} }

// Validate fills a zero Interval and Logger with the defaults and checks
// the rest.
func (c *Config) Validate() error {
	if c.Interval == 0 {
		c.Interval = DefaultConfig().Interval
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	switch {
	case c.SelfID == "":
		return fmt.Errorf("%w: SelfID is empty", ErrInvalidConfig)
	case c.URL != "" && c.Interval < 50*time.Millisecond:
		return fmt.Errorf("%w: Interval %v: at least 50ms", ErrInvalidConfig, c.Interval)
	}
	if c.URL != "" {
		if err := CheckURL(c.URL, c.OwnAddrs...); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	return nil
}

// Member is this node's own member record and the way to change it.
type Member interface {
	// SelfMember returns this node's record; false while it has none.
	SelfMember() (membership.Member, bool)
	// Commit commits a membership command through the leader.
	Commit(ctx context.Context, cmd *mpb.Command) (*membership.Result, error)
}

// Leader is what the watcher needs of the election; *election.Node
// implements it.
type Leader interface {
	Leadership() election.Leadership
	TransferLeadership(ctx context.Context, target string) (election.Leadership, error)
}

// Watcher tracks the application's health and keeps the member record in
// step (see the package doc). Push is safe for concurrent use.
type Watcher struct {
	cfg    Config
	member Member
	leader Leader
	client *http.Client

	mu        sync.Mutex
	pushUsed  bool
	pushUntil time.Time
	pullUsed  bool
	pullOK    bool
	wake      chan struct{} // buffered 1: a push after a lapse acts at once
}

// New builds a watcher; Run starts it.
func New(cfg Config, member Member, leader Leader) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if member == nil || leader == nil {
		return nil, fmt.Errorf("%w: member and leader are required", ErrInvalidConfig)
	}
	return &Watcher{
		cfg: cfg, member: member, leader: leader,
		client: &http.Client{
			Timeout: cfg.Interval,
			// Never follow a redirect: only the configured URL is asked.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     &http.Transport{DisableKeepAlives: true},
		},
		wake: make(chan struct{}, 1),
	}, nil
}

// Push records an application heartbeat valid for ttl.
func (w *Watcher) Push(ttl time.Duration) {
	w.mu.Lock()
	w.pushUsed, w.pushUntil = true, time.Now().Add(ttl)
	w.mu.Unlock()
	w.poke()
}

func (w *Watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Healthy reports the application's health at now.
func (w *Watcher) Healthy(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return (!w.pushUsed || now.Before(w.pushUntil)) && (!w.pullUsed || w.pullOK)
}

// Run keeps the member record in step, and polls the URL when one is set,
// until ctx ends; it returns once both loops have. The caller owns the
// goroutine that runs it.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if w.cfg.URL != "" {
		wg.Add(1)
		go func() { defer wg.Done(); w.pollLoop(ctx) }()
	}
	w.recordLoop(ctx)
	wg.Wait()
}

// recordLoop wakes when a push or a poll result arrives, when the latest
// push's TTL lapses, to retry a failed commit or hand-off, and otherwise
// every recheck.
func (w *Watcher) recordLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	var lastTransfer time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		now := time.Now()
		want := w.Healthy(now)
		t.Reset(w.nextCheck(now, want))
		m, ok := w.member.SelfMember()
		if ok && m.State != membership.StateLeft && m.AppHealthy != want {
			actx, cancel := context.WithTimeout(ctx, writeTimeout)
			_, err := w.member.Commit(actx, membership.SetAppHealthCmd(w.cfg.SelfID, want))
			cancel()
			if err != nil {
				if retry.Retryable(err) {
					w.cfg.Logger.Debug("recording application health failed; retrying", "healthy", want, "error", err)
					resetTimer(t, retryAfter)
				} else {
					w.cfg.Logger.Warn("recording application health refused; trying again later", "healthy", want, "error", err)
				}
				continue
			}
			w.cfg.Logger.Info("application health changed", "healthy", want)
		}
		if !want && w.leader.Leadership().IsLeader && time.Since(lastTransfer) > transferEvery {
			lastTransfer = time.Now()
			tctx, cancel := context.WithTimeout(ctx, writeTimeout)
			_, err := w.leader.TransferLeadership(tctx, "")
			cancel()
			w.cfg.Logger.Info("application unhealthy: handing off leadership", "error", err)
		}
	}
}

// nextCheck is when recordLoop should look again: when the latest push's
// TTL lapses (if that is sooner than recheck), or sooner while the
// application is unhealthy (the hand-off is retried every transferEvery).
func (w *Watcher) nextCheck(now time.Time, healthy bool) time.Duration {
	d := recheck
	w.mu.Lock()
	if w.pushUsed && w.pushUntil.After(now) {
		d = min(d, w.pushUntil.Sub(now)+time.Millisecond)
	}
	w.mu.Unlock()
	if !healthy {
		d = min(d, transferEvery)
	}
	return d
}

// resetTimer stops t, drains a pending fire, and sets it to d.
func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// pollLoop asks the health URL every Interval.
func (w *Watcher) pollLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		ok := w.poll(ctx)
		w.mu.Lock()
		changed := !w.pullUsed || w.pullOK != ok
		w.pullUsed, w.pullOK = true, ok
		w.mu.Unlock()
		if changed {
			w.poke()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll asks the URL once: true for a 2xx answer.
func (w *Watcher) poll(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.cfg.URL, nil)
	if err != nil {
		return false
	}
	resp, err := w.client.Do(req)
	if err != nil {
		w.cfg.Logger.Debug("application health check failed", "url", w.cfg.URL, "error", err)
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// CheckURL accepts only http:// URLs on a loopback host or on the host of
// one of ownAddrs (host:port; a wildcard host does not count): the sidecar
// asks its own application, never some other server.
func CheckURL(raw string, ownAddrs ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL %q: %v", raw, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("URL %q: only http:// is supported", raw)
	}
	host := u.Hostname()
	if host == "" || u.User != nil {
		return fmt.Errorf("URL %q: needs a host and no user info", raw)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	for _, a := range ownAddrs {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" && h == host {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				return nil
			}
		}
	}
	return fmt.Errorf("URL %q: host %q is neither loopback nor this node's configured host", raw, host)
}
