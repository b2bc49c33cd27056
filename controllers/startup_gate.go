package controllers

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/clock"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// A new leader's first passes check every cached ApiToken (docs/architecture.md,
// "Start-up passes"). Nearly all of them find nothing to do, and each is CPU
// only: copies out of the cache, the Secret's metadata read, the statuses
// compared, and the garbage that makes. Ten workers doing them at once took both
// cores of make bench-scale's machine for about two seconds at 10,000 tokens,
// and a token created meanwhile waited for the CPU at every step of its pass:
// create->Ready took 120-460 ms against 30-60 ms otherwise. The start-up gate
// lets those passes through one at a time, so that the other workers, the
// informers and the API server keep the rest of the machine for users' changes.
//
// Only passes that look like re-checks are gated: a pass over an ApiToken that
// no pass of this process has taken to its backend read yet (readLease.firstPass)
// and that is Ready for its current generation, with no credential change asked
// for (a reset, a rotation) and not being deleted. A
// gated pass that finds work (a Secret to write again, a backend read due) waits
// on the API server or the backend, not the CPU; once the gate's holder has had
// it for startupGateHold, the next pass goes ahead without it, so that a
// start-up with much to write is not made one write at a time.
type startupGate struct {
	slot  chan struct{}
	clock clock.Clock
}

// startupGateHold is how long a gated pass may hold the gate before the next
// goes in beside it: several times a pass that only reads the cache (0.1-0.3
// ms at 10,000 tokens), less than a write's round trip on a busy machine.
const startupGateHold = 10 * time.Millisecond

func newStartupGate(clk clock.Clock) *startupGate {
	return &startupGate{slot: make(chan struct{}, 1), clock: clk}
}

// enter waits for the gate, or for startupGateHold, whichever comes first, and
// returns what the pass calls when it ends. Only ctx's end is an error.
func (g *startupGate) enter(ctx context.Context) (leave func(), err error) {
	select {
	case g.slot <- struct{}{}:
		return g.leave, nil
	default:
	}
	timer := g.clock.NewTimer(startupGateHold)
	defer timer.Stop()
	select {
	case g.slot <- struct{}{}:
		return g.leave, nil
	case <-timer.C():
		return func() {}, nil // the holder waits on I/O: go beside it
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *startupGate) leave() { <-g.slot }

// looksSettled reports whether a pass over the ApiToken is likely to find
// nothing to do: Ready for its current generation, not being deleted, no
// credential change asked for or due.
func looksSettled(at *tokensv1alpha1.ApiToken, now time.Time) bool {
	if !at.DeletionTimestamp.IsZero() || at.Status.ObservedGeneration != at.Generation ||
		!meta.IsStatusConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionReady) {
		return false
	}
	_, asked := requestedCredentialChange(at, now)
	return !asked
}
