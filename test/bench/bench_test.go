// Package bench is make bench: the operator binary, running as its
// ServiceAccount with its production client settings, measured against the
// physical floor on one machine. It prints one line per metric and writes JSON.
//
//	make bench                # N = 2000, idle window 100 s, no client-side QPS limit; 300 Hydra ApiTokens first
//	make bench-scale          # N = 10,000, every target enforced
//	make bench-smoke          # N = 100 and 30 Hydra ApiTokens, the CI run: figures printed, targets not enforced
//	go test ./test/bench -run TestBench -v -args -n 2000 -stop-after amplification   # convergence only
//	go test ./test/bench -run TestBench -v -args -n 1 -hydra-n 500 -stop-after hydraCleanup   # the Hydra phases only
//
// The convergence figure is the median of -pairs (3) pairs, each an operator
// run between two baseline runs (a pair's baseline after is the next pair's
// before), of -pair-n ApiTokens: 600 in make bench and 2,000 in make
// bench-scale, to keep their time, and N in make bench-smoke. The
// baseline's writes are made by a plain client, a process of its own
// (plain_client_test.go); both it and the operator converge -warm-up ApiTokens
// before they are timed.
//
// The files follow the phases: setup (flags, cluster, clients, TokenBackend),
// hydra (a TokenBackend of type Hydra: convergence, calls at creation and at
// rest), convergence (pairs of baseline and operator runs, amplification), latency, steady state
// (idle window, restart, re-check, writes, resync reads, memory), throttled
// (429s from the backend), rotation (with overlap and consumers, at rest, in
// place), report (figures, JSON) and counts (audit and tokenservice logs,
// operator metrics, /proc).
package bench

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// benchPhase is one phase of TestBench, named for -skip and -stop-after.
type benchPhase struct {
	name string
	run  func()
}

// TestBench runs the phases in order; each adds its figures to the report, and
// some leave measurements (log positions, RSS, latencies) for later ones.
func TestBench(t *testing.T) {
	if *nFlag <= 0 {
		t.Skip("make bench runs this (-n N)")
	}
	b := setUp(t)
	defer b.writeJSON()
	defer b.enforceTargets()

	phases := []benchPhase{
		{"convergence", b.convergence},                     // a plain client's minimal work and the operator's in turn, each operator run between two; N tokens left converged
		{"amplification", b.amplification},                 // its Kubernetes and backend calls during convergence
		{"idleLatencies", b.idleLatencies},                 // create->Ready and reset->Secret on an idle operator
		{"idleWindow", b.idleWindow},                       // unrelated Secrets appear in an idle window with resyncs
		{"restart", b.restart},                             // SIGTERM and start again, as in a rolling update
		{"latenciesDuringResync", b.latenciesDuringResync}, // the same probes while the restarted operator re-checks
		{"recheck", b.recheck},                             // every token re-checked, spread over one resync interval
		{"steadyStateWrites", b.steadyStateWrites},         // Kubernetes writes in the window and the restart
		{"resyncReads", b.resyncReads},                     // backend reads in the window and the restart
		{"memory", b.memory},                               // RSS with N tokens and with the unrelated Secrets
		{"rotationTokens", b.rotationTokens},               // N/10 ApiTokens with a rotation period and overlap, some with a restart target
		{"idleRotationLatency", b.idleRotationLatency},     // rotate->Secret, one rotation at a time on an idle operator
		{"overlapRotation", b.overlapRotation},             // all rotate at once while consumers verify: latency, calls, writes, refusals
		{"rotationAtRest", b.rotationAtRest},               // left alone for a resync: no writes between scheduled rotations
		{"inPlaceRotation", b.inPlaceRotation},             // overlap 0s: all rotate in place at once
		// 20% of the backend's answers are 429. Each 429 holds that backend's calls
		// for its Retry-After (1 s), so the phase takes about k/8 seconds for k
		// tokens: N/20, at most 200, as the figure (calls per token) does not depend
		// on N (the 429s are every fifth request, not random).
		{"throttled", func() { b.throttledAmplification(max(20, min(b.n/20, 200))) }},
		{"cpuAtRest", b.cpuAtRest}, // restarted with the default resync: CPU while nothing changes
	}
	if *hydraNFlag > 0 {
		// First: the Hydra phases leave nothing behind, and the baseline that
		// follows stops the operator anyway.
		phases = append(b.hydraPhases(), phases...)
	}
	for _, phase := range phases {
		if slices.Contains(strings.Split(*skip, ","), phase.name) {
			t.Logf("skipped %s (-skip)", phase.name)
			continue
		}
		started := time.Now()
		phase.run()
		t.Logf("phase %s: %v", phase.name, time.Since(started).Round(100*time.Millisecond))
		if phase.name == *stopAfter {
			t.Logf("stopped after %s (-stop-after)", phase.name)
			return
		}
	}
}
