package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/internal/faultnet"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// startFaultCluster is startMemCluster (voters only) with every node's peer
// transport wrapped by one fault network.
func startFaultCluster(t *testing.T, voters int) (*testcluster.Cluster, *faultnet.Network) {
	t.Helper()
	c := startCluster(t, voters, 0, testcluster.Options{FaultNet: true})
	return c, c.Net()
}

// stateSampler records, every few milliseconds, the states in which any
// running node's committed view has shown member id.
type stateSampler struct {
	stop, done chan struct{}
	seen       map[membership.MemberState]int
}

func sampleStates(nodes []*node.Node, id string) *stateSampler {
	s := &stateSampler{stop: make(chan struct{}), done: make(chan struct{}), seen: map[membership.MemberState]int{}}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, n := range nodes {
				if m, ok := findMember(n.Membership().View(), id); ok {
					s.seen[m.State]++
				}
			}
		}
	}()
	return s
}

func (s *stateSampler) finish() map[membership.MemberState]int {
	close(s.stop)
	<-s.done
	return s.seen
}

// TestFollowerCutOff isolates a follower in the fault network (every raft
// RPC to and from it is lost; the process keeps running). Cut off for less
// than the detection time it stays alive and nothing moves; cut off for
// longer it is declared dead, exactly its resources move, and once the
// network heals it is alive again and takes work again.
func TestFollowerCutOff(t *testing.T) {
	c, fn := startFaultCluster(t, 5)
	leader := c.Leader()
	c.WaitMembers()
	registerN(t, leader, "p", 100)

	tests := []struct {
		name string
		// cut: how long the follower stays cut off; 0 means until the
		// leader declares it dead.
		cut      time.Duration
		wantDead bool
	}{
		// The harness floors suspicion at 1s and death at 1.5s of silence.
		{name: "shorter than detection", cut: 500 * time.Millisecond},
		{name: "until declared dead", wantDead: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leader := c.Leader()
			before := c.WaitSettled(100)
			victim := c.Follower()
			owned := node.NumOwned(victim, victim.ID())
			if owned == 0 {
				t.Fatalf("%s owns nothing", victim.ID())
			}
			term := leader.Status().Term
			states := sampleStates(c.Live(), victim.ID())
			smp := startSampler(c.Live())
			addr := raft.ServerAddress(victim.PeerAddr())

			fn.Isolate(addr)
			cutAt := time.Now()
			if tc.wantDead {
				testwait.Eventually(t, waitTimeout, victim.ID()+" declared dead", func() (bool, string) {
					m, _ := findMember(leader.Membership().View(), victim.ID())
					return m.State == membership.StateDead, string(m.State)
				})
			} else {
				// Prove the cut is real: the leader stops hearing the victim.
				testwait.Eventually(t, waitTimeout, "the leader's last reply from "+victim.ID()+" ages past 400ms", func() (bool, string) {
					age := time.Since(node.LastContact(leader, string(addr)))
					return age > 400*time.Millisecond, age.String()
				})
				for time.Since(cutAt) < tc.cut {
					time.Sleep(10 * time.Millisecond)
				}
			}
			fn.Heal(addr)
			healed := time.Since(cutAt)

			// Healed: the victim hears the leader again and is alive everywhere.
			testwait.Eventually(t, waitTimeout, victim.ID()+" alive everywhere again", func() (bool, string) {
				for _, n := range c.Live() {
					m, _ := findMember(n.Membership().View(), victim.ID())
					if m.State != membership.StateAlive {
						return false, fmt.Sprintf("%s sees %s", n.ID(), m.State)
					}
				}
				return true, ""
			})
			after := c.WaitSettled(100)
			seen := states.finish()
			violations, samples := smp.finish()
			t.Logf("%s cut off for %v: states seen %v; %d one-owner samples", victim.ID(), healed, seen, samples)
			if len(violations) > 0 {
				t.Errorf("one-owner violations: %v", violations)
			}
			for _, m := range after.Members {
				if m.State != membership.StateAlive {
					t.Errorf("after the heal %s is %s", m.ID, m.State)
				}
			}

			beforeBy := owners(before)
			moved := 0
			for _, r := range after.Resources {
				b := beforeBy[r.ID]
				if r.Owner == b.Owner && r.Epoch == b.Epoch {
					continue
				}
				if !tc.wantDead {
					t.Errorf("%s moved during a short cut: %s@%d -> %s@%d", r.ID, b.Owner, b.Epoch, r.Owner, r.Epoch)
					continue
				}
				if b.Owner != victim.ID() && r.Epoch < seenDeadEpoch(after, victim.ID()) {
					t.Errorf("%s of the live %s moved before %s came back: -> %s@%d", r.ID, b.Owner, victim.ID(), r.Owner, r.Epoch)
				}
				moved++
			}
			if !tc.wantDead {
				if seen[membership.StateDead] > 0 {
					t.Errorf("%s was declared dead after a %v cut (detection floor 1.5s)", victim.ID(), healed)
				}
				if got := leader.Status().Term; got != term || c.Leader() != leader {
					t.Errorf("leadership changed during a short follower cut: term %d -> %d", term, got)
				}
				return
			}
			if seen[membership.StateDead] == 0 {
				t.Errorf("the sampler never saw %s dead", victim.ID())
			}
			if moved < owned {
				t.Errorf("%d resources changed owner, fewer than the %d the victim owned", moved, owned)
			}
			testwait.Eventually(t, waitTimeout, victim.ID()+" owns resources again", func() (bool, string) {
				o := node.NumOwned(victim, victim.ID())
				return o > 0, fmt.Sprint(o, " owned")
			})
		})
	}
}

// seenDeadEpoch is the revision at which id's current state was set: moves
// of other members' resources before it would have happened while id was
// still dead (not allowed: a death moves only the dead node's resources);
// after it, rebalancing toward the returned member may move any.
func seenDeadEpoch(v membership.View, id string) uint64 {
	m, _ := findMember(v, id)
	return m.StateRevision
}
