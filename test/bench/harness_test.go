package bench

// This file: tests of the harness's own helpers, which make test runs (TestBench
// itself skips there without -n).

import (
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
