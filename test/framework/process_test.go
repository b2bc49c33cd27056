package framework

import "testing"

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
