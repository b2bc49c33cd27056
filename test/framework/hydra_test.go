package framework

import "testing"

// lastBytes cuts at a line break, so the log lines a failed test shows are whole.
func TestLastBytesStartsAtALine(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"one\ntwo\nthree\n", 9, "three\n"},
		{"no line breaks at all", 5, "t all"},
	} {
		if got := lastBytes(tc.s, tc.n); got != tc.want {
			t.Errorf("lastBytes(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
