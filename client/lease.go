package client

import (
	"context"
	"sync"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// maxOutstanding bounds the keep-alive requests in flight on one stream: a
// sidecar that stops answering (paused) is not sent an ever-growing queue.
const maxOutstanding = 8

// leaseMsg is one KeepAlive message with its leases turned into deadlines on
// this process's monotonic clock.
type leaseMsg struct {
	// push: the sidecar sent it on its own; it may revoke, never renew (its
	// deadlines are zero).
	push     bool
	isLeader bool
	token    uint64
	// leaderUntil and ownedUntil: when the request this answers was sent,
	// plus the time the sidecar said was left, less LeaseMargin. Zero for a
	// push or when no lease is held.
	leaderUntil time.Time
	ownedUntil  time.Time
	// ownedChanged: owned is the whole owned set (resource id -> epoch).
	ownedChanged bool
	owned        map[string]uint64
}

// leaseSession is one KeepAlive stream to the local sidecar, owned by the
// caller of openLeaseSession: a sender asks every KeepAliveInterval (and at
// once after a push), a receiver turns the answers into leaseMsgs. close
// ends both and waits for them.
type leaseSession struct {
	msgs  chan leaseMsg
	broke chan error // one error when the stream ends
	poke  chan struct{}
	stop  func()
}

// openLeaseSession opens the stream; owned asks for the owned set too.
func (c *Client) openLeaseSession(ctx context.Context, owned bool) (*leaseSession, error) {
	stub, _, err := c.stub(c.local())
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := stub.KeepAlive(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &leaseSession{msgs: make(chan leaseMsg), broke: make(chan error, 2), poke: make(chan struct{}, 1)}
	var (
		mu   sync.Mutex
		sent = map[uint64]time.Time{} // seq -> when it was sent
		wg   sync.WaitGroup
	)
	ask := func(seq uint64) error {
		mu.Lock()
		if len(sent) >= maxOutstanding {
			mu.Unlock()
			return nil
		}
		sent[seq] = time.Now() // taken before the send: never later than it
		mu.Unlock()
		return stream.Send(&heartbeatpb.KeepAliveRequest{Seq: seq, Owned: owned})
	}
	wg.Add(2)
	go func() { // sender
		defer wg.Done()
		t := time.NewTicker(c.cfg.KeepAliveInterval)
		defer t.Stop()
		for seq := uint64(1); ; seq++ {
			if err := ask(seq); err != nil {
				s.broke <- err
				return
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			case <-s.poke:
			}
		}
	}()
	go func() { // receiver
		defer wg.Done()
		for {
			resp, err := stream.Recv()
			if err != nil {
				s.broke <- err
				return
			}
			lease := resp.GetLease()
			m := leaseMsg{push: resp.GetSeq() == 0, isLeader: lease.GetIsLeader(), token: lease.GetFencingToken(),
				ownedChanged: resp.GetOwnedChanged()}
			if m.ownedChanged {
				m.owned = make(map[string]uint64, len(lease.GetOwned()))
				for _, o := range lease.GetOwned() {
					m.owned[o.GetId()] = o.GetEpoch()
				}
			}
			if !m.push {
				mu.Lock()
				at, ok := sent[resp.GetSeq()]
				for seq := range sent {
					if seq <= resp.GetSeq() {
						delete(sent, seq)
					}
				}
				mu.Unlock()
				if ok {
					m.leaderUntil = c.until(at, lease.GetLeaderLeaseRemaining().AsDuration())
					m.ownedUntil = c.until(at, lease.GetOwnershipLeaseRemaining().AsDuration())
				}
			} else {
				select { // confirm at once what the push announced
				case s.poke <- struct{}{}:
				default:
				}
			}
			select {
			case s.msgs <- m:
			case <-sctx.Done():
				return
			}
		}
	}()
	s.stop = func() {
		cancel()
		wg.Wait()
	}
	return s, nil
}

// until is the deadline of a lease with remainingMs left, answered to a
// request sent at sentAt: zero when nothing is left after the margin.
func (c *Client) until(sentAt time.Time, remaining time.Duration) time.Time {
	d := remaining - c.cfg.LeaseMargin
	if remaining <= 0 || d <= 0 {
		return time.Time{}
	}
	return sentAt.Add(d)
}

// leaseTimer fires at a lease's deadline; stopped (nil channel) when the
// client's lease timer is disabled (Config.UnsafeNoLeaseTimer) or no
// deadline is set.
type leaseTimer struct {
	c     *Client
	t     *time.Timer
	until time.Time
}

// set arms the timer for until (zero disarms it).
func (l *leaseTimer) set(until time.Time) {
	l.until = until
	if l.t != nil {
		l.t.Stop()
		l.t = nil
	}
	if until.IsZero() || l.c.cfg.UnsafeNoLeaseTimer {
		return
	}
	l.t = time.NewTimer(time.Until(until))
}

// C is the channel that fires at the deadline (nil when disarmed).
func (l *leaseTimer) C() <-chan time.Time {
	if l.t == nil {
		return nil
	}
	return l.t.C
}

// valid reports whether the lease still holds now.
func (l *leaseTimer) valid() bool {
	if l.c.cfg.UnsafeNoLeaseTimer {
		return !l.until.IsZero()
	}
	return time.Now().Before(l.until)
}

func (l *leaseTimer) stop() {
	if l.t != nil {
		l.t.Stop()
	}
}
