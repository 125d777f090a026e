package election_test

import (
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// claimSampler records, for every node of a cluster, the latest lease end it
// promised while claiming leadership and the first time it claimed after a
// mark, sampling every 200µs.
type claimSampler struct {
	mu         sync.Mutex
	promised   map[int]time.Time // node -> the latest LeaseUntil it claimed with
	firstClaim map[int]time.Time // node -> first claim after mark
	mark       time.Time
	stop, done chan struct{}
}

func sampleClaims(c *testcluster.ElectionCluster) *claimSampler {
	s := &claimSampler{promised: map[int]time.Time{}, firstClaim: map[int]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			for _, i := range c.Alive() {
				l := c.Node(i).Node.Leadership()
				now := time.Now()
				if !l.IsLeader {
					continue
				}
				s.mu.Lock()
				if l.LeaseUntil.After(s.promised[i]) {
					s.promised[i] = l.LeaseUntil
				}
				if _, ok := s.firstClaim[i]; !ok && !s.mark.IsZero() && now.After(s.mark) {
					s.firstClaim[i] = now
				}
				s.mu.Unlock()
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return s
}

func (s *claimSampler) setMark() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mark = time.Now()
}

func (s *claimSampler) close() {
	close(s.stop)
	<-s.done
}

// TestTransferClaimWaitsForOldLease: a hand-off elects the new leader through
// a TimeoutNow, which bypasses the votes that keep a normal election out of
// the old leader's lease. The new leader must not claim leadership before
// the last lease end the old leader promised has passed. With the hold-off
// off (the planted violation) it claims within milliseconds, inside the old
// lease, and the same check fails.
func TestTransferClaimWaitsForOldLease(t *testing.T) {
	for _, planted := range []bool{false, true} {
		name := "hold-off"
		if planted {
			name = "planted: no hold-off"
		}
		t.Run(name, func(t *testing.T) {
			// A long lease (1.2 s) against a transfer of a few tens of
			// milliseconds, so that the planted claim lands inside the old
			// lease even on a loaded machine.
			c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{Heartbeat: 1500 * time.Millisecond,
				Tweak: func(cfg *election.Config) { election.SetNoClaimHoldoff(cfg, planted) }})
			old := c.WaitLeader(10 * time.Second)
			s := sampleClaims(c)
			defer s.close()
			// Let the old leader renew its lease a few times under sampling.
			testwait.Eventually(t, 5*time.Second, "the old leader's claim sampled", func() (bool, string) {
				s.mu.Lock()
				defer s.mu.Unlock()
				return time.Until(s.promised[old]) > 0, "old leader's claim not sampled"
			})
			target := (old + 1) % 3
			s.setMark()
			if err := transferTo(c.Node(old).Node, testcluster.ContextWithin(t, 10*time.Second), c.Node(target).ID); err != nil {
				t.Fatalf("transfer: %v", err)
			}
			var first, promised time.Time
			testwait.Eventually(t, 10*time.Second, "the new leader's first claim", func() (bool, string) {
				s.mu.Lock()
				defer s.mu.Unlock()
				first, promised = s.firstClaim[target], s.promised[old]
				return !first.IsZero(), "the new leader never claimed"
			})
			early := promised.Sub(first)
			switch {
			case planted && early <= 0:
				t.Fatalf("planted violation not caught: the new leader claimed %v after the old lease ended", -early)
			case planted:
				t.Logf("planted violation caught: the new leader claimed %v inside the old leader's lease", early)
			case early > 0:
				t.Fatalf("the new leader claimed %v before the old leader's promised lease ended", early)
			default:
				t.Logf("new leader claimed %v after the old lease ended", -early)
			}
		})
	}
}
