package leadership

import (
	"fmt"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
)

// StateReader reads the replicated membership state; *membership.FSM
// implements it.
type StateReader interface {
	// Read calls fn with the state under its read lock; fn must not keep it.
	Read(fn func(*membership.State))
}

// CanLead returns the membership state's verdict on a voter's fitness to
// lead, in the form election.Config.CanLead expects: nil when the member is
// alive, not draining and its application healthy; an error wrapping
// election.ErrUnknownMember when the state has no record of it;
// election.ErrMemberGone when it is dead or left; a plain reason otherwise
// (suspect, draining, application unhealthy).
func CanLead(s StateReader) func(id string) error {
	return func(id string) error {
		var m membership.Member
		var ok bool
		s.Read(func(st *membership.State) { m, ok = st.Member(id) })
		switch {
		case !ok:
			return fmt.Errorf("%w: %q has no membership record", election.ErrUnknownMember, id)
		case m.State == membership.StateDead || m.State == membership.StateLeft:
			return fmt.Errorf("%w: %q is %s", election.ErrMemberGone, id, m.State)
		case m.State != membership.StateAlive:
			return fmt.Errorf("%q is %s", id, m.State)
		case m.Draining:
			return fmt.Errorf("%q is draining", id)
		case !m.AppHealthy:
			return fmt.Errorf("the application beside %q is unhealthy", id)
		}
		return nil
	}
}
