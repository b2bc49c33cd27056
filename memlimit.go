package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/resource"
)

// defaultGCPercent is the operator's GOGC unless the environment sets one. The
// cache holds every ApiToken and its Secret, so the live heap grows with the
// number of tokens and Go's default (100: the heap may grow to twice what is
// live before a collection) doubles it. At 25 the heap stays within 1.25 times
// what is live; make bench-scale measured 7.4 KiB of RSS per token at 10,000
// tokens (13.6 with the default) for about a fifth more of the operator's CPU
// while many tokens change at once, and nothing noticeable at rest. With the
// cache's shared strings (controllers/cache_compact.go) it measured 6.0, and
// 5.0-5.1 with the implied Secret labels dropped, just over the 5 KiB target:
// 20 keeps the heap within 1.2 times what is live. keepMinHeap sets a floor
// under it (--gc-min-heap), which keeps the collector's CPU low while the cache
// is small.
const defaultGCPercent = 20

// setGCPercent applies defaultGCPercent unless GOGC is set (the runtime has
// read it already); it returns the value in effect and where it came from.
// With a minimum heap (--gc-min-heap), the percent is retuned after every
// collection (keepMinHeap).
func setGCPercent(gogc string, minHeap uint64) (string, string) {
	if gogc != "" {
		return gogc, "GOGC"
	}
	debug.SetGCPercent(defaultGCPercent)
	if minHeap == 0 {
		return strconv.Itoa(defaultGCPercent), "the operator's default"
	}
	keepMinHeap(minHeap)
	return fmt.Sprintf("%d, the heap at least %d MiB", defaultGCPercent, minHeap>>20), "the operator's default with --gc-min-heap"
}

// The heap the collector lets grow between two collections is its working
// space: where the passes' garbage goes. GOGC sizes it as a share of what is
// live, which for the operator is mostly the cache: with few tokens, GOGC=25
// collected every few megabytes of garbage, about a fifth of the operator's CPU
// while 2,000 tokens converged (make bench), though memory was plentiful. A
// fixed working space on top of GOGC's share cost that much memory at every
// size: 32 MiB more peak RSS for 10,000 tokens, 3.3 KiB per token over the
// memory target. keepMinHeap sets a floor instead, as the runtime's own
// minimum heap (4 MiB at GOGC=100) but larger: no collection before the heap
// reaches the floor, so a small cache has a working space of the floor less
// what is live, and a cache whose heap at GOGC=20 is above the floor (10,000
// tokens with the default) is collected as at GOGC=20 alone. A GOGC or
// GOMEMLIMIT set by the user and the container's memory limit still win (the
// runtime keeps to a memory limit whatever the percent).

// parseMinHeap reads --gc-min-heap, a quantity of bytes ("48Mi", "0").
func parseMinHeap(value string) (uint64, error) {
	q, err := resource.ParseQuantity(value)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("--gc-min-heap %q: want a size such as 48Mi, or 0", value)
	}
	return uint64(q.Value()), nil
}

// maxGCPercent bounds the percent keepMinHeap sets (a heap with little live).
const maxGCPercent = 1000

// gcPercentFor is the percent that starts the next collection at percent % more
// than live, or at minHeap when that is more.
func gcPercentFor(live, minHeap uint64, percent int) int {
	switch {
	case live == 0:
		return maxGCPercent
	case live+live*uint64(percent)/100 >= minHeap:
		return percent
	}
	return int(min(100*(minHeap-live)/live, maxGCPercent))
}

// keepMinHeap sets the percent now and after every collection. A finalizer
// runs once after the collection that finds its object unreachable; each run
// arms the next with a new object (the runtime has no hook at the end of a
// cycle). It returns a function that stops it (the tests').
func keepMinHeap(minHeap uint64) (stop func()) {
	var stopped atomic.Bool
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		if stopped.Load() {
			return
		}
		metrics.Read(live)
		if live[0].Value.Kind() == metrics.KindUint64 {
			debug.SetGCPercent(gcPercentFor(live[0].Value.Uint64(), minHeap, defaultGCPercent))
		}
		// 16 bytes or more: the tiny allocator would batch a smaller object with
		// others, and its finalizer might never run.
		runtime.SetFinalizer(new(gcCycleMark), func(*gcCycleMark) { arm() })
	}
	arm()
	return func() { stopped.Store(true) }
}

type gcCycleMark struct{ _ [16]byte }

// memoryLimitShare is the part of the container's memory limit given to the Go
// heap as a soft limit; the rest is for stacks, the runtime and what the heap
// overshoots before the collector catches up.
const memoryLimitShare = 0.9

// cgroupMemoryLimit is the container's memory limit in bytes (cgroup v2's
// memory.max, else v1's memory.limit_in_bytes), 0 when there is none.
func cgroupMemoryLimit() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if data, err := os.ReadFile(path); err == nil {
			return parseMemoryLimit(string(data))
		}
	}
	return 0
}

// parseMemoryLimit reads a cgroup memory limit file: "max" or a huge v1 value
// (no limit) is 0.
func parseMemoryLimit(content string) int64 {
	v, err := strconv.ParseInt(strings.TrimSpace(content), 10, 64)
	if err != nil || v <= 0 || v >= math.MaxInt64/2 {
		return 0
	}
	return v
}

// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the
// container's limit, so that the collector works harder before the kernel kills
// the process, instead of letting the heap grow to twice what is live. A
// GOMEMLIMIT set by the user wins (the runtime has read it already). It returns
// the limit it set, 0 if none, and where it came from.
func setMemoryLimit(gomemlimit string, containerLimit int64) (int64, string) {
	if gomemlimit != "" {
		return 0, "GOMEMLIMIT"
	}
	if containerLimit <= 0 {
		return 0, ""
	}
	limit := int64(float64(containerLimit) * memoryLimitShare)
	debug.SetMemoryLimit(limit)
	return limit, "the container's memory limit"
}
