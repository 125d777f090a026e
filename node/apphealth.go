package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/membership"
)

// Application liveness pacing.
const (
	// appRetry is how soon a failed SetAppHealth commit is retried.
	appRetry = 50 * time.Millisecond
	// appRecheck is how often, with nothing due, the node compares its
	// application's health with its member record anyway (a record can
	// change under it: a restore, another node's write). A lapsing push
	// TTL and a changed poll result are acted on at once, not on this
	// period.
	appRecheck = time.Second
	// appWriteTimeout bounds one SetAppHealth commit.
	appWriteTimeout = 2 * time.Second
	// appTransferEvery spaces leadership hand-offs of a leader whose
	// application is unhealthy (a failed hand-off is retried this often).
	appTransferEvery = 2 * time.Second
)

// appHealth tracks the health of the application beside this node, from
// push heartbeats (AppHeartbeat with a TTL) and/or a polled health URL, and
// keeps the member's AppHealthy flag in the replicated state in step with it.
// An unused source counts as healthy, so with neither the application is
// always healthy. Unhealthy means the node drains: the leader's reconciler
// moves its resources away (Member.CanKeep is false), and if the node leads
// it hands leadership to another voter.
type appHealth struct {
	n        *Node
	url      string
	interval time.Duration
	client   *http.Client

	mu        sync.Mutex
	pushUsed  bool
	pushUntil time.Time
	pullUsed  bool
	pullOK    bool
	wake      chan struct{} // buffered 1: a push after a lapse acts at once
}

func newAppHealth(n *Node) *appHealth {
	return &appHealth{
		n: n, url: n.cfg.AppHealthURL, interval: n.cfg.AppHealthInterval,
		client: &http.Client{
			Timeout: n.cfg.AppHealthInterval,
			// Never follow a redirect: only the configured URL is asked.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     &http.Transport{DisableKeepAlives: true},
		},
		wake: make(chan struct{}, 1),
	}
}

// push records an application heartbeat valid for ttl.
func (a *appHealth) push(ttl time.Duration) {
	a.mu.Lock()
	a.pushUsed, a.pushUntil = true, time.Now().Add(ttl)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// healthy reports the application's health at now.
func (a *appHealth) healthy(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return (!a.pushUsed || now.Before(a.pushUntil)) && (!a.pullUsed || a.pullOK)
}

// run keeps the member record in step until ctx ends. It wakes when a push
// or a poll result arrives (wake), when the latest push's TTL lapses, to
// retry a failed commit or hand-off, and otherwise every appRecheck.
func (a *appHealth) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	var lastTransfer time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		now := time.Now()
		want := a.healthy(now)
		t.Reset(a.nextCheck(now, want))
		m, ok := a.n.selfMember()
		if ok && m.State != membership.StateLeft && m.AppHealthy != want {
			actx, cancel := context.WithTimeout(ctx, appWriteTimeout)
			_, err := a.n.Commit(actx, membership.SetAppHealthCmd(a.n.cfg.ID, want))
			cancel()
			if err != nil {
				a.n.log.Debug("recording application health failed; retrying", "healthy", want, "error", err)
				resetTimer(t, appRetry)
				continue
			}
			a.n.log.Info("application health changed", "healthy", want)
		}
		if !want && a.n.el.Leadership().IsLeader && time.Since(lastTransfer) > appTransferEvery {
			lastTransfer = time.Now()
			tctx, cancel := context.WithTimeout(ctx, appWriteTimeout)
			err := a.n.el.Transfer(tctx, "")
			cancel()
			a.n.log.Info("application unhealthy: handing off leadership", "error", err)
		}
	}
}

// nextCheck is when run should look again: when the latest push's TTL
// lapses (if that is sooner than appRecheck), or sooner while the
// application is unhealthy and this node leads (the hand-off is retried
// every appTransferEvery).
func (a *appHealth) nextCheck(now time.Time, healthy bool) time.Duration {
	d := appRecheck
	a.mu.Lock()
	if a.pushUsed && a.pushUntil.After(now) {
		d = min(d, a.pushUntil.Sub(now)+time.Millisecond)
	}
	a.mu.Unlock()
	if !healthy {
		d = min(d, appTransferEvery)
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

// pollLoop asks the health URL every interval: a 2xx answer is healthy,
// anything else (an error, a timeout, another status, a redirect) not.
func (a *appHealth) pollLoop(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		ok := a.poll(ctx)
		a.mu.Lock()
		changed := !a.pullUsed || a.pullOK != ok
		a.pullUsed, a.pullOK = true, ok
		a.mu.Unlock()
		if changed {
			select {
			case a.wake <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *appHealth) poll(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
	if err != nil {
		return false
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.n.log.Debug("application health check failed", "url", a.url, "error", err)
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// checkAppHealthURL accepts only http:// URLs on a loopback host or on one of
// the hosts the node itself is configured with: the sidecar asks its own
// application, never some other server.
func checkAppHealthURL(raw string, ownAddrs ...string) error {
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
