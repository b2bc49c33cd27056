package main

import (
	"context"
	"fmt"
	"time"
)

// The operator's work is waiting: on the API server's answers and watches, on
// its backends. Its goroutines hand each other small pieces of work (a watch
// event read, decoded, queued, reconciled; a request written, its answer read),
// and with more than one P (GOMAXPROCS) every hand-off to a goroutine that was
// asleep has the Go scheduler wake an idle thread to look for it, which then
// finds nothing and sleeps again: two futex calls, two context switches, and
// the runtime's monitor thread kept ticking at 20 µs. On a virtual machine a
// system call costs more than the work around it. Measured while 1,100 tokens
// converged (make bench's harness, the same run, perf stat on the operator):
// 81,000 system calls and 45,000 context switches with Go's default of two Ps,
// 51,000 and 28,000 with one, and 15 % less CPU. One P runs the operator's CPU
// (about 2 ms per token) for hundreds of tokens a second, more than the API
// server takes, so a second one buys no throughput. Go's default (the node's
// CPUs, or the container's CPU limit, at least 2) stays available with
// --max-procs=0, and GOMAXPROCS in the environment wins over both. The
// operator starts with Go's default and drops to --max-procs five seconds
// after it becomes the leader (procsAfterStartup).

// defaultMaxProcs is --max-procs unless given.
const defaultMaxProcs = 1

// maxProcsFor decides --max-procs (0: Go's default) unless GOMAXPROCS is set
// (the runtime has read it already): the number of threads to run Go code on
// once the start-up passes are done (procsAfterStartup), 0 to leave the
// runtime's as it is, and where the value in effect comes from.
func maxProcsFor(gomaxprocs string, maxProcs int) (int, string, error) {
	switch {
	case maxProcs < 0:
		return 0, "", fmt.Errorf("--max-procs %d: want 0 (Go's default) or more", maxProcs)
	case gomaxprocs != "":
		return 0, "GOMAXPROCS", nil
	case maxProcs == 0:
		return 0, "Go's default", nil
	}
	return maxProcs, "--max-procs, after the leader's start-up passes", nil
}

// startupProcsFor is how long, after it becomes the leader, the operator keeps
// Go's default number of threads before it drops to --max-procs. The new
// leader's first passes check every cached ApiToken (10,000 in make
// bench-scale): work for the CPU, not waiting, which one thread makes a token
// created meanwhile wait for. make bench-scale's first probes after a restart
// took 300-460 ms with one thread from the start. This rule alone did not settle
// it (120-230 ms); the start-up gate did (controllers/startup_gate.go: those
// passes one at a time), after which the first probes took 58-156 ms.
const startupProcsFor = 5 * time.Second

// procsAfterStartup is a leader-elected runnable that sets GOMAXPROCS to procs
// once the leader's start-up passes have had startupProcsFor.
type procsAfterStartup struct {
	procs int
	after func(time.Duration) <-chan time.Time // time.After
	set   func(int) int                        // runtime.GOMAXPROCS
}

func (p procsAfterStartup) NeedLeaderElection() bool { return true }

func (p procsAfterStartup) Start(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-p.after(startupProcsFor):
		p.set(p.procs)
	}
	return nil
}
