package bench

// This file: tests of the harness's own helpers, which make test runs (TestBench
// itself skips there without -n).

import (
	"maps"
	"math"
	"os"
	"slices"
	"testing"
	"time"
)

func TestPlainClientConfigSurvivesTheEnvironment(t *testing.T) {
	in := plainClientConfig{operatorKubeconfig: "/tmp/a b/kubeconfig", tokenServiceURL: "https://127.0.0.1:8443", adminKey: "k=v;x", qps: -1, workers: 10}
	out, err := decodePlainClientConfig(in.encode())
	if err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("decoded %+v, encoded %+v", out, in)
	}
	for _, bad := range []string{"", "a\nb\nc\nd", "a\nb\nc\nfast\n10", "a\nb\nc\n-1\nten"} {
		if _, err := decodePlainClientConfig(bad); err == nil {
			t.Errorf("%q: decoded without an error", bad)
		}
	}
}

func TestPerSecondCountsFromTheStart(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	got := perSecond([]time.Time{at(-500), at(0), at(999), at(1000), at(3500)}, start)
	// One before the start counts in the first second; none in the third.
	if want := []int{3, 1, 0, 1}; !slices.Equal(got, want) {
		t.Fatalf("perSecond = %v, want %v", got, want)
	}
	if got := perSecond(nil, start); len(got) != 0 {
		t.Fatalf("perSecond of nothing = %v", got)
	}
}

func TestBusiestWindowSlides(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	// Windows are half-open: 0 and 10 s apart are in different 10 s windows;
	// the busiest holds 9.5, 10, 12 and 19 s, which no window aligned to 0 holds.
	times := []time.Time{at(19000), at(0), at(9500), at(12000), at(10000)}
	if got := busiestWindow(times, 10*time.Second); got != 4 {
		t.Fatalf("busiestWindow = %d, want 4", got)
	}
}

// TestLogLinesBeingWrittenAreLeftForLater: the logs are read while their
// writers append; a last line without its newline is not a line yet (make
// bench-scale once failed on half a tokenservice record).
func TestLogLinesBeingWrittenAreLeftForLater(t *testing.T) {
	path := t.TempDir() + "/log"
	if err := os.WriteFile(path, []byte("{\"a\":1}\n{\"a\":2}\n{\"a\":"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := lineCount(t, path); n != 2 {
		t.Errorf("lineCount = %d, want the 2 complete lines", n)
	}
	var got []int
	eachRecord(t, path, 0, -1, func(*struct{ A int }) bool { return true }, func(e *struct{ A int }) { got = append(got, e.A) })
	if !slices.Equal(got, []int{1, 2}) {
		t.Errorf("records %v, want [1 2]", got)
	}
}

// TestBracketedRatioCancelsASteadyDrift: a machine slowing down by the same
// factor from each run to the next leaves the operator's figure over its
// baselines at what it would be without the drift; compared with the run
// before it alone, the drift counts against the operator.
func TestBracketedRatioCancelsASteadyDrift(t *testing.T) {
	for _, c := range []struct {
		name                    string
		before, operator, after float64
		want                    float64
	}{
		{"no drift", 10, 10, 10, 1},
		{"7 % slower each run, operator as fast as the baseline", 10, 10.7, 10.7 * 1.07, 1},
		{"7 % slower each run, operator 5 % slower", 10, 10.7 * 1.05, 10.7 * 1.07, 1.05},
		{"a fast run after", 10, 11, 8.1, 11 / 9.0},
	} {
		if got := bracketed(c.operator, c.before, c.after); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: bracketed(%g, %g, %g) = %.6f, want %.6f", c.name, c.operator, c.before, c.after, got, c.want)
		}
	}
	pair := convergencePair{
		BaselineBefore: timedRun{Seconds: 10, CPU: map[string]float64{plainClientCommand: 2}},
		Operator:       timedRun{Seconds: 11, CPU: map[string]float64{"manager": 1.8, plainClientCommand: 99}},
		BaselineAfter:  timedRun{Seconds: 12.1, CPU: map[string]float64{plainClientCommand: 2, "manager": 99}},
	}
	if got := pair.ratio(); math.Abs(got-1) > 1e-9 {
		t.Errorf("pair ratio = %.6f, want 1 (11 s between 10 and 12.1 s)", got)
	}
	if got := pair.cpuRatio(); math.Abs(got-0.9) > 1e-9 {
		t.Errorf("pair CPU ratio = %.6f, want 0.9: the operator's CPU in its run over the plain client's in the baselines", got)
	}
}

func TestAddCountsKeepsEveryKey(t *testing.T) {
	a := map[string]int{"create secrets 201": 3, "patch apitokens 200": 2}
	got := addCounts(a, map[string]int{"create secrets 201": 1, "get secrets 404": 1})
	want := map[string]int{"create secrets 201": 4, "patch apitokens 200": 2, "get secrets 404": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("addCounts = %v, want %v", got, want)
	}
	if a["create secrets 201"] != 3 {
		t.Fatalf("addCounts changed its first argument: %v", a)
	}
}
