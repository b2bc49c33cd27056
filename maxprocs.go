package main

import (
	"fmt"
	"runtime"
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
// --max-procs=0, and GOMAXPROCS in the environment wins over both.

// defaultMaxProcs is --max-procs unless given.
const defaultMaxProcs = 1

// setMaxProcs applies --max-procs (0: Go's default) unless GOMAXPROCS is set
// (the runtime has read it already); it returns the value in effect and where
// it came from.
func setMaxProcs(gomaxprocs string, maxProcs int) (int, string, error) {
	switch {
	case maxProcs < 0:
		return 0, "", fmt.Errorf("--max-procs %d: want 0 (Go's default) or more", maxProcs)
	case gomaxprocs != "":
		return runtime.GOMAXPROCS(0), "GOMAXPROCS", nil
	case maxProcs == 0:
		return runtime.GOMAXPROCS(0), "Go's default", nil
	}
	runtime.GOMAXPROCS(maxProcs)
	return maxProcs, "--max-procs", nil
}
