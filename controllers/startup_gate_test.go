package controllers

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

func TestLooksSettled(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ready := func(mutate func(at *tokensv1alpha1.ApiToken)) *tokensv1alpha1.ApiToken {
		at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Name: "t", Generation: 3}}
		at.Status.ObservedGeneration = 3
		at.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue}}
		if mutate != nil {
			mutate(at)
		}
		return at
	}
	past := metav1.NewTime(now.Add(-time.Minute))
	for _, tc := range []struct {
		name string
		at   *tokensv1alpha1.ApiToken
		want bool
	}{
		{"Ready for its generation", ready(nil), true},
		{"a reset handled before", ready(func(at *tokensv1alpha1.ApiToken) {
			at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "n1"}
			at.Status.LastHandledReset = "n1"
		}), true},
		{"new: no status yet", &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Generation: 1}}, false},
		{"spec changed since", ready(func(at *tokensv1alpha1.ApiToken) { at.Generation = 4 }), false},
		{"not Ready", ready(func(at *tokensv1alpha1.ApiToken) { at.Status.Conditions[0].Status = metav1.ConditionFalse }), false},
		{"being deleted", ready(func(at *tokensv1alpha1.ApiToken) { at.DeletionTimestamp = &past }), false},
		{"a reset asked for", ready(func(at *tokensv1alpha1.ApiToken) {
			at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "n2"}
			at.Status.LastHandledReset = "n1"
		}), false},
		{"a rotation asked for", ready(func(at *tokensv1alpha1.ApiToken) {
			at.Annotations = map[string]string{tokensv1alpha1.RotateAnnotation: "r1"}
		}), false},
		{"a scheduled rotation due", ready(func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Rotation.Period = &metav1.Duration{Duration: time.Hour}
			issued := metav1.NewTime(now.Add(-2 * time.Hour))
			at.Status.CredentialsIssuedAt = &issued
		}), false},
		{"a scheduled rotation not yet due", ready(func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Rotation.Period = &metav1.Duration{Duration: time.Hour}
			issued := metav1.NewTime(now.Add(-time.Minute))
			at.Status.CredentialsIssuedAt = &issued
		}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := looksSettled(tc.at, now); got != tc.want {
				t.Errorf("looksSettled = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestStartupGateLetsOneThroughUntilItsHolderWaits: a second pass waits for the
// first to leave; once the holder has had the gate for startupGateHold, the
// next goes beside it; a pass whose context ends stops waiting.
func TestStartupGateLetsOneThroughUntilItsHolderWaits(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	g := newStartupGate(clk)
	leaveFirst, err := g.enter(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan func(), 1)
	go func() {
		leave, _ := g.enter(t.Context())
		entered <- leave
	}()
	waitForTimers(t, clk)
	select {
	case <-entered:
		t.Fatal("a second pass went in while the first held the gate")
	case <-time.After(20 * time.Millisecond):
	}
	leaveFirst()
	leaveSecond := <-entered // it has the gate now

	go func() {
		leave, _ := g.enter(t.Context())
		entered <- leave
	}()
	waitForTimers(t, clk)
	clk.Step(startupGateHold)
	(<-entered)() // went beside the holder: its leave frees nothing
	select {
	case g.slot <- struct{}{}:
		t.Fatal("the pass that went beside the holder freed the holder's place")
	default:
	}
	leaveSecond()

	if _, err := g.enter(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := g.enter(ctx); err == nil {
		t.Error("a pass whose context ended still went in")
	}
}

// waitForTimers waits until a goroutine waits on one of clk's timers.
func waitForTimers(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("nothing waits on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTouchedFieldsOfCompactedEntriesAreParsedOnce(t *testing.T) {
	// The memo is the process's own, shared with the suite's manager: its
	// entries are the few compacted forms the suite's Secrets have, far from full.
	full := metav1.NewFieldsV1(`{"f:data":{".":{},"f:apiKey":{},"f:sid":{}},"f:metadata":{"f:annotations":{"f:` + credentialsGenerationAnnotation + `":{}},"f:labels":{}}}`)
	compacted := compactManagedFields([]metav1.ManagedFieldsEntry{{Manager: FieldManager, FieldsV1: full}})
	if len(compacted) != 1 {
		t.Fatalf("compacted to %d entries, want 1", len(compacted))
	}
	raw := compacted[0].FieldsV1.GetRawBytes()
	stored, ok := touchedMemo.get(raw)
	if !ok || len(stored.dataKeys) == 0 {
		t.Fatal("the compacted entry was not left parsed in touchedMemo")
	}
	keys, annotations := touchedFields(compacted[0].FieldsV1)
	if len(keys) == 0 || &keys[0] != &stored.dataKeys[0] {
		t.Error("touchedFields parsed the compacted entry again instead of reading touchedMemo")
	}
	want := parseTouchedFields(raw)
	if !annotations || !want.credentialsAnnotations || len(keys) != 2 || len(want.dataKeys) != 2 {
		t.Errorf("memoized %v %v, parsed %v %v: want both data keys and the annotations", keys, annotations, want.dataKeys, want.credentialsAnnotations)
	}
	if ours, others := dataOwnership(compacted); len(ours) != 2 || ours[0] != "apiKey" || ours[1] != "sid" || others {
		t.Errorf("dataOwnership = %v %v, want [apiKey sid] false", ours, others)
	}
}
