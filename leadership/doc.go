// Package leadership is the policy on which voter should lead, on top of
// the mechanism that decides who does.
//
// Package election is the mechanism: raft elects a leader, the lease says
// when it may act, and election.Node.TransferLeadership is the one place
// where leadership is handed over (with every check). Raft alone knows
// nothing of the cluster's membership state, so this package adds the two
// pieces of policy that need it:
//
//   - CanLead is the membership state's veto on a leadership transfer: a
//     voter that is not alive, drains, or whose application is unhealthy
//     cannot be handed leadership. The node passes it to the election
//     (election.Config.CanLead), so that the API's TransferLeadership, a
//     priority hand-off and a step-down all meet the same rule.
//   - Priority is the leader-priority loop. Each member has a priority
//     0..100 (membership.Member.LeaderPriority). While this node leads,
//     every Config.Tick it looks for voters that are alive,
//     application-healthy, not draining, answering the leader's heartbeats
//     in this term (fresh within Config.AckFresh) and of a higher priority
//     than its own; one that has stayed so for Config.Holdoff is handed
//     leadership (highest priority, then lowest id). Equal priorities never
//     move leadership, so the default (all 0) never does, and two nodes
//     cannot bounce it between them; a failed attempt is retried no sooner
//     than a holdoff later. A follower sleeps on a leadership watch.
//
// Other reasons to hand leadership away live with their cause: an
// unhealthy application (package apphealth) and a departure (package
// lifecycle). Each calls election.Node.TransferLeadership.
package leadership
