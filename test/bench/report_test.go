package bench

// This file: the figures, their printed lines, bench.json and the targets.

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

type metric struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target string  `json:"target"`
	Pass   *bool   `json:"pass,omitempty"`
}

type report struct {
	mu      sync.Mutex
	metrics []metric
}

// add records a figure and prints its line; pass is nil for a figure without a
// target.
func (r *report) add(name string, value float64, unit, target string, pass *bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, metric{name, value, unit, target, pass})
	verdict := "info"
	if pass != nil {
		verdict = map[bool]string{true: "PASS", false: "FAIL"}[*pass]
	}
	fmt.Printf("%-54s %12.3f %-10s target %-12s %s\n", name, value, unit, target, verdict)
}

func le(v, limit float64) *bool { b := v <= limit; return &b }
func ge(v, limit float64) *bool { b := v >= limit; return &b }

func between(v, lo, hi float64) *bool { b := lo <= v && v <= hi; return &b }

// writeJSON writes the run's parameters and figures to -out.
func (b *benchRun) writeJSON() {
	out, _ := json.MarshalIndent(map[string]any{"n": b.n, "hydraN": *hydraNFlag, "idle": idleFlag.String(), "resync": resyncFlag.String(), "secrets": *secretsFlag,
		"pairN": b.pairN(), "convergencePairs": b.pairs, "metrics": b.r.metrics}, "", "  ")
	if err := os.WriteFile(*outFlag, out, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// enforceTargets fails the test for every figure that misses its target,
// unless -enforce=false.
func (b *benchRun) enforceTargets() {
	for _, m := range b.r.metrics {
		if *enforce && m.Pass != nil && !*m.Pass {
			b.t.Errorf("%s = %.3f, target %s", m.Name, m.Value, m.Target)
		}
	}
}
