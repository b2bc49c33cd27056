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
	}
	want := map[string]string{
		"first create":          "create/uid-1",
		"create after a lookup": "create/uid-1/rv/42",
		"create after a loss":   "create/uid-1/after/TK1",
		"reset":                 "reset/uid-1/5f537b80f1f2b7d1cc179dba8d36aa88",
		"rotate by nonce":       "rotate/uid-1/nonce/82f3e9c695dc6b8d1b11818d5701919e",
		"scheduled rotation":    "rotate/uid-1/at/1796299200",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}
