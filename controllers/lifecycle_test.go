package controllers

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func change(kind tokensv1alpha1.CredentialChangeType, nonce, sid string, gen int64) tokensv1alpha1.CredentialChange {
	return tokensv1alpha1.CredentialChange{Type: kind, Nonce: nonce, AccountSID: sid, Generation: gen, Time: metav1.NewTime(t0)}
}

func TestNonceHandled(t *testing.T) {
	history := []tokensv1alpha1.CredentialChange{
		change(tokensv1alpha1.CredentialsReset, "B", "TK1", 3),
		change(tokensv1alpha1.CredentialsReset, "A", "TK1", 2),
		change(tokensv1alpha1.CredentialsRotated, "R", "TK1", 1),
	}
	tests := map[string]struct {
		nonce, last string
		kind        tokensv1alpha1.CredentialChangeType
		want        bool
	}{
		"empty asks for nothing":             {"", "B", tokensv1alpha1.CredentialsReset, true},
		"the last handled one":               {"B", "B", tokensv1alpha1.CredentialsReset, true},
		"restored older value (A → B → A)":   {"A", "B", tokensv1alpha1.CredentialsReset, true},
		"new value":                          {"C", "B", tokensv1alpha1.CredentialsReset, false},
		"rotate nonce in history":            {"R", "", tokensv1alpha1.CredentialsRotated, true},
		"a reset nonce does not mark rotate": {"A", "", tokensv1alpha1.CredentialsRotated, false},
		"nothing handled yet":                {"X", "", tokensv1alpha1.CredentialsReset, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := nonceHandled(tc.nonce, tc.last, history, tc.kind); got != tc.want {
				t.Errorf("nonceHandled(%q, %q) = %v, want %v", tc.nonce, tc.last, got, tc.want)
			}
		})
	}
}

func rotating(period, overlap time.Duration, issued *time.Time, annotations map[string]string) *tokensv1alpha1.ApiToken {
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{UID: "uid-1", Annotations: annotations}}
	if period > 0 {
		at.Spec.Rotation.Period = &metav1.Duration{Duration: period}
	}
	if overlap > 0 {
		at.Spec.Rotation.Overlap = &metav1.Duration{Duration: overlap}
	}
	if issued != nil {
		at.Status.CredentialsIssuedAt = &metav1.Time{Time: *issued}
	}
	return at
}

func TestDueCredentialChange(t *testing.T) {
	issued := t0
	tests := map[string]struct {
		at      *tokensv1alpha1.ApiToken
		now     time.Time
		want    credentialChange
		wantDue bool
	}{
		"nothing asked": {at: rotating(0, 0, &issued, nil), now: t0.Add(1000 * time.Hour)},
		"period not reached": {
			at: rotating(time.Hour, 0, &issued, nil), now: t0.Add(59 * time.Minute)},
		"period reached, in place": {
			at: rotating(time.Hour, 0, &issued, nil), now: t0.Add(time.Hour), wantDue: true,
			want: credentialChange{kind: tokensv1alpha1.CredentialsRotated, key: "rotate/uid-1/at/" + itoa(t0.Add(time.Hour).Unix())}},
		"period reached, overlap": {
			at: rotating(time.Hour, 10*time.Minute, &issued, nil), now: t0.Add(2 * time.Hour), wantDue: true,
			want: credentialChange{kind: tokensv1alpha1.CredentialsRotated, key: "rotate/uid-1/at/" + itoa(t0.Add(time.Hour).Unix()), overlap: 10 * time.Minute}},
		"period without issued credentials": {at: rotating(time.Hour, 0, nil, nil), now: t0},
		"rotate annotation": {
			at: rotating(0, time.Minute, &issued, map[string]string{tokensv1alpha1.RotateAnnotation: "q4"}), now: t0, wantDue: true,
			want: credentialChange{kind: tokensv1alpha1.CredentialsRotated, nonce: "q4", key: "rotate/uid-1/nonce/" + shortHash("q4"), overlap: time.Minute}},
		"reset first, always in place": {
			at:  rotating(time.Hour, time.Minute, &issued, map[string]string{tokensv1alpha1.ResetAnnotation: "leak", tokensv1alpha1.RotateAnnotation: "q4"}),
			now: t0.Add(5 * time.Hour), wantDue: true,
			want: credentialChange{kind: tokensv1alpha1.CredentialsReset, nonce: "leak", key: resetKey(&tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{UID: "uid-1"}}, "leak")}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, due := dueCredentialChange(tc.at, tc.now)
			if due != tc.wantDue {
				t.Fatalf("due = %v, want %v", due, tc.wantDue)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(credentialChange{})); diff != "" {
				t.Errorf("change (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDueCredentialChangeSkipsHandledNonces(t *testing.T) {
	issued := t0
	at := rotating(0, 0, &issued, map[string]string{tokensv1alpha1.ResetAnnotation: "A", tokensv1alpha1.RotateAnnotation: "R"})
	at.Status.LastHandledReset = "B"
	at.Status.History = []tokensv1alpha1.CredentialChange{change(tokensv1alpha1.CredentialsReset, "A", "TK1", 2), change(tokensv1alpha1.CredentialsRotated, "R", "TK1", 3)}
	if c, due := dueCredentialChange(at, t0); due {
		t.Errorf("a restored reset and a handled rotate are due: %+v", c)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestWithChangeKeepsTenNewestFirst(t *testing.T) {
	var history []tokensv1alpha1.CredentialChange
	for i := range 12 {
		history = withChange(history, change(tokensv1alpha1.CredentialsReset, itoa(int64(i)), "TK1", int64(i+1)))
	}
	if len(history) != historyLimit || history[0].Nonce != "11" || history[9].Nonce != "2" {
		t.Errorf("history %d long, first %q, last %q; want 10, 11, 2", len(history), history[0].Nonce, history[len(history)-1].Nonce)
	}
}

func TestStaleCredentials(t *testing.T) {
	history := []tokensv1alpha1.CredentialChange{change(tokensv1alpha1.CredentialsReset, "B", "TK1", 3)}
	creds := func(sid string, gen int64) backend.Credentials {
		return backend.Credentials{AccountSID: sid, AuthToken: "x", Generation: gen}
	}
	tests := map[string]struct {
		reply, delivered backend.Credentials
		haveDelivered    bool
		want             bool
	}{
		"newer than history and Secret":         {creds("TK1", 4), creds("TK1", 3), true, false},
		"a replay of what the Secret holds":     {creds("TK1", 3), creds("TK1", 3), true, false},
		"older than the history (replay of A)":  {creds("TK1", 2), creds("TK1", 3), true, true},
		"older than the Secret":                 {creds("TK1", 4), creds("TK1", 5), true, true},
		"older than history, Secret gone":       {creds("TK1", 2), backend.Credentials{}, false, true},
		"another token's generation counts not": {creds("TK2", 1), creds("TK1", 7), true, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			holds := tc.haveDelivered && tc.delivered.AccountSID == tc.reply.AccountSID
			if got := staleCredentials(tc.reply, tc.delivered.Generation, holds, history); got != tc.want {
				t.Errorf("stale = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRetiringDue(t *testing.T) {
	retiring := []tokensv1alpha1.RetiringToken{
		{AccountSID: "TK1", DeleteAfter: metav1.NewTime(t0)},
		{AccountSID: "TK2", DeleteAfter: metav1.NewTime(t0.Add(time.Hour))},
		{AccountSID: "TK3", DeleteAfter: metav1.NewTime(t0.Add(time.Minute))},
	}
	sids := func(ts []tokensv1alpha1.RetiringToken) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.AccountSID)
		}
		return out
	}
	tests := map[string]struct {
		disabled  bool
		now       time.Time
		due, kept []string
		wantNext  time.Time
	}{
		"before any deadline":         {now: t0.Add(-time.Second), kept: []string{"TK1", "TK2", "TK3"}, wantNext: t0},
		"at the first deadline":       {now: t0, due: []string{"TK1"}, kept: []string{"TK2", "TK3"}, wantNext: t0.Add(time.Minute)},
		"after every deadline":        {now: t0.Add(2 * time.Hour), due: []string{"TK1", "TK2", "TK3"}},
		"disabled ends every overlap": {disabled: true, now: t0.Add(-time.Hour), due: []string{"TK1", "TK2", "TK3"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			due, kept, next := retiringDue(retiring, tc.disabled, tc.now)
			if diff := cmp.Diff(tc.due, sids(due)); diff != "" {
				t.Errorf("due (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.kept, sids(kept)); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if !next.Equal(tc.wantNext) {
				t.Errorf("next %v, want %v", next, tc.wantNext)
			}
		})
	}
}

func TestAdoptionCandidates(t *testing.T) {
	found := []backend.Token{{SID: "TK-lost"}, {SID: "TK-retiring"}, {SID: "TK-inflight"}, {SID: "TK-dup"}}
	retiring := []tokensv1alpha1.RetiringToken{{AccountSID: "TK-retiring"}}
	var got []string
	for _, t := range adoptionCandidates(found, "TK-lost", retiring) {
		got = append(got, t.SID)
	}
	if diff := cmp.Diff([]string{"TK-inflight", "TK-dup"}, got); diff != "" {
		t.Errorf("candidates (-want +got):\n%s", diff)
	}
	if len(found) != 4 {
		t.Errorf("the input was modified")
	}
}

func TestRollsTargets(t *testing.T) {
	tests := map[tokensv1alpha1.CredentialChangeType]bool{
		tokensv1alpha1.CredentialsCreated: false, tokensv1alpha1.CredentialsAdopted: false,
		tokensv1alpha1.CredentialsReset: true, tokensv1alpha1.CredentialsRotated: true, tokensv1alpha1.CredentialsRecreated: true,
	}
	for kind, want := range tests {
		if got := rollsTargets(kind); got != want {
			t.Errorf("rollsTargets(%s) = %v, want %v", kind, got, want)
		}
	}
	if got := credentialsRef("TK1", 3); got != "TK1/3" {
		t.Errorf("credentialsRef = %q", got)
	}
}

func TestNextWake(t *testing.T) {
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: t0.Add(d)} }
	tests := map[string]struct {
		rotation *metav1.Time
		retire   time.Time
		want     time.Duration
	}{
		"nothing scheduled: no requeue": {want: 0},
		"rotation":                      {rotation: at(time.Hour), want: time.Hour + 10*time.Millisecond},
		"overlap ends first":            {rotation: at(time.Minute), retire: t0.Add(time.Second), want: time.Second + 10*time.Millisecond},
		"rotation first":                {rotation: at(time.Minute), retire: t0.Add(time.Hour), want: time.Minute + 10*time.Millisecond},
		"overdue rotation: right now":   {rotation: at(-time.Hour), want: 10 * time.Millisecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := nextWake(t0, tc.rotation, tc.retire); got != tc.want {
				t.Errorf("nextWake = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFirstReadOffsetSpreadsEvenly: after a restart, the first reads of any number
// of tokens fill 95% of the interval evenly, so that no 10-second stretch of a
// one-minute interval holds more than its share (+3% for the 97%) plus a couple.
func TestFirstReadOffsetSpreadsEvenly(t *testing.T) {
	resync := time.Minute
	for _, n := range []int{7, 100, 2000, 10000} {
		offsets := make([]time.Duration, n)
		for k := range offsets {
			offsets[k] = firstReadOffset(uint64(k), resync)
			if offsets[k] < 0 || offsets[k] >= resync*95/100 {
				t.Fatalf("n=%d: offset %d = %v, outside [0, 95%% of %v)", n, k, offsets[k], resync)
			}
		}
		slices.Sort(offsets)
		window := 10 * time.Second
		share := float64(n) * window.Seconds() / (firstReadSpread * resync.Seconds())
		most, lo := 0, 0
		for hi := range offsets {
			for offsets[hi]-offsets[lo] >= window {
				lo++
			}
			most = max(most, hi-lo+1)
		}
		if float64(most) > share+3 {
			t.Errorf("n=%d: %d first reads in one 10s window, share %.1f", n, most, share)
		}
	}
}

func TestStripForCacheDropsWhatIsNeverRead(t *testing.T) {
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{
		Name:          "a",
		Annotations:   map[string]string{lastAppliedAnnotation: `{"spec":{}}`, tokensv1alpha1.ResetAnnotation: "n1"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	out, err := stripForCache(at)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*tokensv1alpha1.ApiToken)
	if got.ManagedFields != nil || got.Annotations[lastAppliedAnnotation] != "" {
		t.Errorf("kept managed fields or the last-applied annotation: %+v", got.ObjectMeta)
	}
	if got.Annotations[tokensv1alpha1.ResetAnnotation] != "n1" {
		t.Errorf("dropped the reset annotation: %v", got.Annotations)
	}
}
