package membership

import (
	"fmt"
	"math"
	"sort"
)

// PlanConfig tunes the assignment strategy. It is leader-local: a different
// value on another node changes how fast it rebalances, never correctness.
type PlanConfig struct {
	// MaxMovesPerRound caps rebalancing moves (resources leaving a member that
	// can keep them, toward the member rendezvous hashing prefers, typically a
	// newcomer) per Plan call. Resources with no owner or an owner that can no
	// longer keep them (dead, left, draining, unhealthy) are always placed at
	// once: this cap never delays a failover. 0 disables rebalancing.
	// Default 500 (10,000/s at the reconciler's 50 ms tick).
	MaxMovesPerRound int
	// FairShareSlack lets a member receive rebalancing moves only while its
	// load (sum of resource weights) stays at or under its fair share times
	// (1 + FairShareSlack). The fair share is its capacity's part of the total
	// weight among members that can keep resources. Default 0.10.
	FairShareSlack float64
}

// DefaultPlanConfig returns the default strategy tuning.
func DefaultPlanConfig() PlanConfig {
	return PlanConfig{MaxMovesPerRound: 500, FairShareSlack: 0.10}
}

// Validate checks the configuration.
func (c PlanConfig) Validate() error {
	if c.MaxMovesPerRound < 0 {
		return fmt.Errorf("%w: MaxMovesPerRound %d < 0", ErrInvalidConfig, c.MaxMovesPerRound)
	}
	if c.FairShareSlack < 0 || c.FairShareSlack > 10 || math.IsNaN(c.FairShareSlack) {
		return fmt.Errorf("%w: FairShareSlack %v outside 0..10", ErrInvalidConfig, c.FairShareSlack)
	}
	return nil
}

// Move reassigns ResourceID from From (at FromEpoch; "" and 0 if unowned) to To.
type Move struct {
	ResourceID string
	From       string
	FromEpoch  uint64
	To         string
}

// PlanResult is the outcome of Plan.
type PlanResult struct {
	Moves       []Move // sorted by resource id
	Placed      int    // moves of unowned resources or resources whose owner cannot keep them
	Rebalanced  int    // moves toward the preferred member of a resource whose owner could keep it
	Deferred    int    // rebalancing moves held back by MaxMovesPerRound (for a later round)
	Capped      int    // rebalancing moves not made because the target is at its fair share
	Unplaceable int    // resources that need an owner while no member can take one
}

// Plan computes the moves that bring the state toward its target assignment:
// each resource on the member with the highest weighted rendezvous score,
// score(m, r) = capacity(m) / -ln(u(m, r)), with u(m, r) in (0,1) a hash of the
// member and resource ids. Plan is pure and deterministic: the same state and
// config give the same moves on every run and every node.
//
//   - A resource with no owner, or whose owner cannot keep it (Member.CanKeep
//     false), goes to its best-scoring member among those that can take work
//     (Member.CanTake). Nothing else moves because of a death, a leave, a drain.
//   - A resource whose owner can keep it moves only when its best-scoring
//     member among all that can keep work is another member that can take
//     work (a newcomer, or a member back from the dead): rate-limited by
//     MaxMovesPerRound and capped at the target's fair share. A suspect member
//     keeps its resources and receives none, so a flap moves nothing.
func Plan(s *State, cfg PlanConfig) PlanResult { return plan(s, cfg, false) }

// PlanUnowned is Plan restricted to resources without an owner: the moves
// Plan would make for them (Plan places each resource independently of the
// others), at a cost proportional to their number instead of all resources.
// The reconciler uses it while MemberRevision is unchanged and no rebalance is
// pending: then no owned resource can need a move.
func PlanUnowned(s *State, cfg PlanConfig) PlanResult { return plan(s, cfg, true) }

func plan(s *State, cfg PlanConfig, onlyUnowned bool) PlanResult {
	type cand struct {
		id   string
		seed uint64
		cap  float64
		take bool
		load float64
	}
	var cands []cand // members that can keep work, sorted by id
	for _, m := range s.members {
		if m.CanKeep() {
			cands = append(cands, cand{id: m.ID, seed: mix64(hashID(m.ID)), cap: float64(m.Capacity), take: m.CanTake()})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].id < cands[j].id })
	index := make(map[string]int, len(cands))
	equal, takers, capSum := true, 0, 0.0
	for i, c := range cands {
		index[c.id] = i
		capSum += c.cap
		if c.take {
			takers++
		}
		if c.cap != cands[0].cap {
			equal = false
		}
	}

	var res PlanResult
	type rebalance struct {
		r      *resEntry
		from   int
		to     int
		weight float64
	}
	var rebal []rebalance
	total := 0.0
	consider := func(r *resEntry) {
		w := float64(r.Weight)
		owner, keep := index[r.Owner]
		if r.Owner == "" {
			keep = false
		}
		if !keep && takers == 0 {
			res.Unplaceable++
			return
		}
		total += w
		best, bestTaker := -1, -1
		var bestScore, bestTakerScore float64
		for i := range cands {
			sc := score(r.hash, cands[i].seed, cands[i].cap, equal)
			if best < 0 || sc > bestScore {
				best, bestScore = i, sc
			}
			if cands[i].take && (bestTaker < 0 || sc > bestTakerScore) {
				bestTaker, bestTakerScore = i, sc
			}
		}
		if !keep {
			res.Moves = append(res.Moves, Move{ResourceID: r.ID, From: r.Owner, FromEpoch: r.Epoch, To: cands[bestTaker].id})
			cands[bestTaker].load += w
			res.Placed++
			return
		}
		cands[owner].load += w
		if best != owner && cands[best].take {
			rebal = append(rebal, rebalance{r: r, from: owner, to: best, weight: w})
		}
	}
	if onlyUnowned {
		for id := range s.unowned {
			r, _ := s.get(id)
			consider(r)
		}
	} else {
		for i := range s.res {
			consider(&s.res[i])
		}
	}

	if len(rebal) > 0 {
		sort.Slice(rebal, func(i, j int) bool { return rebal[i].r.ID < rebal[j].r.ID })
		for _, rb := range rebal {
			fair := total * cands[rb.to].cap / capSum * (1 + cfg.FairShareSlack)
			if cands[rb.to].load+rb.weight > fair {
				res.Capped++
				continue
			}
			if res.Rebalanced >= cfg.MaxMovesPerRound {
				res.Deferred++
				continue
			}
			cands[rb.to].load += rb.weight
			cands[rb.from].load -= rb.weight
			res.Moves = append(res.Moves, Move{ResourceID: rb.r.ID, From: rb.r.Owner, FromEpoch: rb.r.Epoch, To: cands[rb.to].id})
			res.Rebalanced++
		}
	}
	sort.Slice(res.Moves, func(i, j int) bool { return res.Moves[i].ResourceID < res.Moves[j].ResourceID })
	return res
}

// score is the weighted rendezvous score of a member (seed, capacity) for a
// resource hash. With equal capacities the ranking of -c/ln(u) equals the
// ranking of u, so the logarithm is skipped.
func score(rh, seed uint64, capacity float64, equal bool) float64 {
	x := mix64(rh ^ seed)
	u := (float64(x>>11) + 0.5) / (1 << 53) // uniform in (0,1)
	if equal {
		return u
	}
	return -capacity / math.Log(u)
}

// mix64 is the splitmix64 finalizer: a fixed bijective mixer, identical on
// every platform and Go version (unlike hash/maphash).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
