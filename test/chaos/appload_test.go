//go:build chaos

package chaos

import (
	"context"
	"slices"
)

// workResources is how many resources the suite registers for the workload.
const workResources = 24

// startWork registers the workload's resources and waits (up to the restart
// bound) until the leader job and every resource are worked on; a workload
// that never gets there is an error of the run, not a stop.
func (r *runner) startWork(app *Workload) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.RestartBound)
	defer cancel()
	if err := app.Register(ctx, workResources); err != nil {
		return err
	}
	if !r.waitFor(r.cfg.RestartBound, func() bool { ok, _ := app.Live(workResources); return ok }) {
		_, desc := app.Live(workResources)
		r.t.Errorf("application workload not live within %s of registering: %s", r.cfg.RestartBound, desc)
	}
	return nil
}

// selectFaults keeps the faults named in only (kind or kind/target); all
// of them when only is empty.
func selectFaults(plan []faultDef, only []string) []faultDef {
	if len(only) == 0 {
		return plan
	}
	var out []faultDef
	for _, d := range plan {
		if slices.Contains(only, d.kind) || slices.Contains(only, d.kind+"/"+d.target) {
			out = append(out, d)
		}
	}
	return out
}
