package api

import (
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// Quota bounds the replicated state (etcd's space quota and NOSPACE alarm
// are the model). The leader checks it before it proposes a write that
// grows the state: such a write is refused with ResourceExhausted
// (ReasonQuotaExceeded, HTTP 507) and raises the quota alarm of its kind;
// reads, deletes and writes that do not grow the state still work. The
// check is made by the node that proposes, never when a command is applied,
// so nodes configured differently cannot make the state machines diverge:
// the leader's quota is the one that holds.
//
// The check reads the applied state: proposals in flight are not counted,
// so concurrent registrations can overshoot the quota by what one round of
// them carries (at most the number of concurrent writers times one request:
// --max-request-bytes and membership.MaxBatch resources each).
type Quota struct {
	// MaxBytes bounds membership.State.Bytes (resource ids, labels and
	// membership.ResourceOverhead each). 0: no bound.
	MaxBytes int64
	// MaxResources bounds the number of resources. 0: no bound.
	MaxResources int
}

// Quota kinds: the values of QuotaAlarm's argument and of the "kind"
// metadata of a ReasonQuotaExceeded status.
const (
	QuotaBytes     = "bytes"
	QuotaResources = "resources"
)

// quotaAlarms remembers, per kind, the usage at which the leader last
// refused a write. The alarm stays raised while the usage has not dropped
// below it and no write of that kind has been admitted since.
type quotaAlarms struct {
	mu sync.Mutex
	at map[string]int64 // kind -> usage at the refusal; absent: clear
}

func (q *quotaAlarms) raise(kind string, usage int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.at == nil {
		q.at = make(map[string]int64)
	}
	q.at[kind] = usage
}

func (q *quotaAlarms) clear(kind string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.at, kind)
}

// raised reports the alarm of kind at the current usage (clearing it when
// the usage has dropped below the refusal's).
func (q *quotaAlarms) raised(kind string, usage int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	at, ok := q.at[kind]
	if ok && usage < at {
		delete(q.at, kind)
		return false
	}
	return ok
}

// QuotaAlarm reports whether the quota alarm of kind (QuotaBytes,
// QuotaResources) is raised on this node: it refused a write of that kind
// and the state has not shrunk, nor has a write been admitted, since. Only
// the leader (the node that checks) raises it. The node exports it as the
// gauge heartbeat_quota_alarm{kind}.
func (c *Coordinator) QuotaAlarm(kind string) bool {
	fsm := c.cfg.Membership
	if fsm == nil {
		return false
	}
	var usage int64
	fsm.Read(func(s *membership.State) {
		if kind == QuotaBytes {
			usage = s.Bytes()
		} else {
			usage = int64(s.NumResources())
		}
	})
	return c.alarms.raised(kind, usage)
}

// checkQuota refuses, on the leader, a registration that would take the
// state over Quota. Any other command, and every command on a follower (the
// leader checks what it forwards), passes.
func (c *Coordinator) checkQuota(fsm *membership.FSM, cmd *mpb.Command) error {
	q := c.cfg.Quota
	reg, ok := cmd.GetOp().(*mpb.Command_RegisterResources)
	if !ok || (q.MaxBytes <= 0 && q.MaxResources <= 0) || c.cfg.Election.Leadership().LeaderID != c.cfg.ID {
		return nil
	}
	var (
		bytes, grow int64
		count, add  int
	)
	fsm.Read(func(s *membership.State) {
		bytes, count = s.Bytes(), s.NumResources()
		for _, spec := range reg.RegisterResources.GetResources() {
			labels := make([]membership.Label, 0, len(spec.GetLabels()))
			for _, l := range spec.GetLabels() {
				labels = append(labels, membership.Label{Key: l.GetKey(), Value: l.GetValue()})
			}
			n := membership.ResourceBytes(spec.GetId(), labels)
			if r, found := s.Resource(spec.GetId()); found {
				grow += n - membership.ResourceBytes(r.ID, r.Labels)
				continue
			}
			grow += n
			add++
		}
	})
	if q.MaxResources > 0 && add > 0 {
		if count+add > q.MaxResources {
			c.alarms.raise(QuotaResources, int64(count))
			return quotaStatus(QuotaResources, "%d resources registered, %d more would pass --max-resources %d", count, add, q.MaxResources)
		}
		c.alarms.clear(QuotaResources)
	}
	if q.MaxBytes > 0 && grow > 0 {
		if bytes+grow > q.MaxBytes {
			c.alarms.raise(QuotaBytes, bytes)
			return quotaStatus(QuotaBytes, "state of %d bytes, %d more would pass --quota-bytes %d", bytes, grow, q.MaxBytes)
		}
		c.alarms.clear(QuotaBytes)
	}
	return nil
}

// quotaStatus is the answer to a write refused by the quota.
func quotaStatus(kind, format string, args ...any) error {
	return statusWithReason(codes.ResourceExhausted, ReasonQuotaExceeded, map[string]string{"kind": kind},
		"quota exceeded: %s; delete resources first (reads and deletes still work)", fmt.Sprintf(format, args...))
}

// quotaKinds are the alarm kinds, for the node's metric.
var quotaKinds = []string{QuotaBytes, QuotaResources}

// QuotaKinds lists the quota alarm kinds.
func QuotaKinds() []string { return slices.Clone(quotaKinds) }
