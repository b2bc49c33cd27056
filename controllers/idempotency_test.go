package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// The keys are stored in the backend, where a repeated call is replayed by its
// key: the same change must give the same key across releases. These are the
// keys as the operator has always sent them.
func TestIdempotencyKeysAreStable(t *testing.T) {
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{UID: "uid-1", ResourceVersion: "42"}}
	due := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	got := map[string]string{
		"first create":          createKey(at, "", false),
		"create after a lookup": createKey(at, "", true),
		"create after a loss":   createKey(at, "TK1", true),
		"reset":                 resetKey(at, "leak"),
		"rotate by nonce":       rotateKey(at, "r1"),
		"scheduled rotation":    scheduledRotationKey(at, due),
		"adoption's secret":     adoptKey(at),
		"regenerated secret":    regenerateKey(at, "uid-1", 3),
	}
	want := map[string]string{
		"first create":          "create/uid-1",
		"create after a lookup": "create/uid-1/rv/42",
		"create after a loss":   "create/uid-1/after/TK1",
		"reset":                 "reset/uid-1/5f537b80f1f2b7d1cc179dba8d36aa88",
		"rotate by nonce":       "rotate/uid-1/nonce/82f3e9c695dc6b8d1b11818d5701919e",
		"scheduled rotation":    "rotate/uid-1/at/1796299200",
		"adoption's secret":     "adopt/uid-1",
		"regenerated secret":    "regenerate/uid-1/uid-1/3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

// For a backend whose SIDs the operator chooses (Hydra), the SID is the
// idempotency of a create: it must follow from the status alone.
func TestChosenSIDs(t *testing.T) {
	withStatus := func(sid string, retiring ...string) *tokensv1alpha1.ApiToken {
		at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{UID: "u"}}
		at.Status.AccountSID = sid
		for _, r := range retiring {
			at.Status.RetiringTokens = append(at.Status.RetiringTokens, tokensv1alpha1.RetiringToken{AccountSID: r})
		}
		return at
	}
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"the first token is the UID", firstSID(withStatus(""), ""), "u"},
		{"a lost first token is replaced by u-1", firstSID(withStatus(""), "u"), "u-1"},
		{"a rotation's successor", successorSID(withStatus("u")), "u-1"},
		{"counts past retiring tokens", successorSID(withStatus("u-1", "u")), "u-2"},
		{"counts past the highest", successorSID(withStatus("u-2", "u-7", "u-3")), "u-8"},
		{"an adopted SID counts as 0", successorSID(withStatus("hand-made")), "u-1"},
		{"a lost token counts", firstSID(withStatus("u-4"), "u-4"), "u-5"},
		{"not fooled by a longer prefix", successorSID(withStatus("u-1", "uu-9", "u-x")), "u-2"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
