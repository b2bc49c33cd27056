package main

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is the operator's GOGC unless the environment sets one. The
// cache holds every ApiToken and its Secret, so the live heap grows with the
// number of tokens and Go's default (100: the heap may grow to twice what is
// live before a collection) doubles it. At 25 the heap stays within 1.25 times
// what is live; make bench-scale measured 7.4 KiB of RSS per token at 10,000
// tokens (13.6 with the default) for about a fifth more of the operator's CPU
// while many tokens change at once, and nothing noticeable at rest. With the
// cache's shared strings (controllers/cache_compact.go) it measured 6.0.
const defaultGCPercent = 25

// setGCPercent applies defaultGCPercent unless GOGC is set (the runtime has
// read it already); it returns the value in effect and where it came from.
func setGCPercent(gogc string) (string, string) {
	if gogc != "" {
		return gogc, "GOGC"
	}
	debug.SetGCPercent(defaultGCPercent)
	return strconv.Itoa(defaultGCPercent), "the operator's default"
}

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
