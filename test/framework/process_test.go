package framework

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tail keeps the last lines of a log whole, and all of a shorter one.
func TestTailKeepsTheLastLines(t *testing.T) {
	for _, tc := range []struct {
		s     string
		lines int
		want  string
	}{
		{"short", 10, "short"},
		{"one\ntwo\nthree", 2, "two\nthree"},
		{"one\ntwo\nthree\n", 2, "three\n"},
	} {
		if got := Tail(tc.s, tc.lines); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.s, tc.lines, got, tc.want)
		}
	}
}

// A process that exits ends the wait for its answer at once, saying so,
// instead of after the whole timeout.
func TestWaitForAProcessThatExitedEndsAtOnce(t *testing.T) {
	p, err := StartProcess(filepath.Join(t.TempDir(), "log"), nil, "/bin/sh", "-c", "exit 3")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = waitHTTP(p.cancelOnExit(t.Context(), "the process exited"), "http://"+FreeAddr()+"/readyz", time.Minute)
	if err == nil || !strings.Contains(err.Error(), "the process exited") {
		t.Fatalf("waitHTTP = %v, want an error saying the process exited", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("waitHTTP returned after %v: it waited for the timeout", took)
	}
}
