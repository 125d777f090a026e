package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// membershipCollector exports the membership state and the reconciler's
// counters. It reads both at scrape time (the state under the FSM's read
// lock, O(members)); it keeps no state of its own.
type membershipCollector struct {
	n *Node

	members, resources, unowned, revision, owned, appHealthy, draining *prometheus.Desc
	recCounters                                                        []recCounter
}

type recCounter struct {
	desc *prometheus.Desc
	get  func(membership.ReconcilerStats) uint64
}

func newMembershipCollector(n *Node) *membershipCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("heartbeat_membership_"+name, help, labels, nil)
	}
	c := &membershipCollector{
		n:          n,
		members:    d("members", "Members in the replicated state, by state (alive, suspect, dead, left).", "state"),
		resources:  d("resources", "Registered resources."),
		unowned:    d("resources_unowned", "Registered resources without an owner."),
		revision:   d("revision", "Raft index of the last applied membership command."),
		owned:      d("self_owned_resources", "Resources this node owns."),
		appHealthy: d("self_app_healthy", "1 while this node's application is healthy in the replicated state."),
		draining:   d("self_draining", "1 while this node is draining."),
	}
	counter := func(name, help string, get func(membership.ReconcilerStats) uint64) {
		c.recCounters = append(c.recCounters, recCounter{d("reconciler_"+name+"_total", help), get})
	}
	counter("ticks", "Reconcile steps taken while leading.", func(s membership.ReconcilerStats) uint64 { return s.Ticks })
	counter("marked_suspect", "Members this node marked suspect.", func(s membership.ReconcilerStats) uint64 { return s.MarkedSuspect })
	counter("marked_dead", "Members this node declared dead.", func(s membership.ReconcilerStats) uint64 { return s.MarkedDead })
	counter("marked_alive", "Members this node marked alive again.", func(s membership.ReconcilerStats) uint64 { return s.MarkedAlive })
	counter("moves", "Resource moves committed.", func(s membership.ReconcilerStats) uint64 { return s.Moves })
	counter("skipped", "Planned moves the state machine skipped as stale.", func(s membership.ReconcilerStats) uint64 { return s.Skipped })
	counter("rejected", "Reconciler commands the state machine rejected.", func(s membership.ReconcilerStats) uint64 { return s.Rejected })
	counter("stalls", "Reconciler tick gaps long enough to forgive peers.", func(s membership.ReconcilerStats) uint64 { return s.Stalls })
	counter("errors", "Reconciler commits that failed.", func(s membership.ReconcilerStats) uint64 { return s.Errors })
	counter("full_plans", "Assignment plans over all resources.", func(s membership.ReconcilerStats) uint64 { return s.FullPlans })
	counter("released", "Resources released (owner none) so that their live owner's ownership lease runs out before anyone else gets them.", func(s membership.ReconcilerStats) uint64 { return s.Released })
	counter("lease_waits", "Planned moves held back a round because the old owner's ownership lease could still hold.", func(s membership.ReconcilerStats) uint64 { return s.LeaseWaits })
	return c
}

// Describe implements prometheus.Collector.
func (c *membershipCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.resources, c.unowned, c.revision, c.owned, c.appHealthy, c.draining} {
		ch <- d
	}
	for _, rc := range c.recCounters {
		ch <- rc.desc
	}
}

// Collect implements prometheus.Collector.
func (c *membershipCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[membership.MemberState]int{}
	var res, unowned, owned int
	var rev uint64
	var self membership.Member
	var haveSelf bool
	c.n.mfsm.Read(func(s *membership.State) {
		for _, m := range s.Members() {
			counts[m.State]++
		}
		res, unowned, rev = s.NumResources(), s.NumUnowned(), s.Revision()
		owned = s.NumOwned(c.n.cfg.ID)
		self, haveSelf = s.Member(c.n.cfg.ID)
	})
	for _, st := range []membership.MemberState{membership.StateAlive, membership.StateSuspect, membership.StateDead, membership.StateLeft} {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(counts[st]), st.String())
	}
	ch <- prometheus.MustNewConstMetric(c.resources, prometheus.GaugeValue, float64(res))
	ch <- prometheus.MustNewConstMetric(c.unowned, prometheus.GaugeValue, float64(unowned))
	ch <- prometheus.MustNewConstMetric(c.revision, prometheus.GaugeValue, float64(rev))
	ch <- prometheus.MustNewConstMetric(c.owned, prometheus.GaugeValue, float64(owned))
	ch <- prometheus.MustNewConstMetric(c.appHealthy, prometheus.GaugeValue, b2f(!haveSelf || self.AppHealthy))
	ch <- prometheus.MustNewConstMetric(c.draining, prometheus.GaugeValue, b2f(haveSelf && self.Draining))
	stats := c.n.rec.Stats()
	for _, rc := range c.recCounters {
		ch <- prometheus.MustNewConstMetric(rc.desc, prometheus.CounterValue, float64(rc.get(stats)))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// registerQuotaMetrics exports the quota alarms (api.Coordinator.QuotaAlarm)
// and the state's size as the quota counts it.
func (n *Node) registerQuotaMetrics() {
	for _, kind := range api.QuotaKinds() {
		n.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "heartbeat_quota_alarm",
			Help:        "1 while this node (the leader) refuses writes that would pass the state's quota of this kind (--quota-bytes, --max-resources); cleared once the state shrinks or a write of the kind is admitted.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 {
			if n.coord.QuotaAlarm(kind) {
				return 1
			}
			return 0
		}))
	}
	n.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "heartbeat_membership_state_bytes",
		Help: "Size of the replicated state as --quota-bytes counts it (resource ids, labels and 64 bytes each).",
	}, func() float64 {
		var b int64
		n.mfsm.Read(func(s *membership.State) { b = s.Bytes() })
		return float64(b)
	}))
}
