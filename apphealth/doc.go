// Package apphealth watches the health of the application beside a node and
// turns it into the node's part of the replicated state.
//
// Two sources tell the application's health, and either may be unused (an
// unused source counts as healthy, so with neither the application is
// always healthy):
//
//   - push: the application calls Coordinator.AppHeartbeat(ttl) (or POST
//     /v1/app/heartbeat), which ends in Watcher.Push; it is healthy until
//     the latest TTL lapses;
//   - pull: the watcher polls Config.URL every Config.Interval; a 2xx
//     answer is healthy, anything else (an error, a timeout, another
//     status, a redirect) is not. Only http:// on loopback or on one of the
//     node's own hosts is accepted (CheckURL): the sidecar asks its own
//     application, never some other server.
//
// Watcher.Run keeps the member record's AppHealthy flag in step, through
// the leader (membership.SetAppHealthCmd): it acts at once on a push after
// a lapse, on a lapsing TTL and on a changed poll result, and compares
// anyway every second (a record can change under it). Unhealthy is a
// drain: the leader's reconciler moves the node's resources away
// (membership.Member.CanKeep is false), and while this node leads it hands
// leadership to another voter through election.Node.TransferLeadership,
// every 2s while it stays unhealthy and leading. Healthy again, the node
// gets its fair share back (rate-limited by the strategy).
//
// The package needs two things of its owner, declared here as small
// interfaces: the node's own member record and a way to commit to it
// (Member), and the leadership (Leader).
package apphealth
