package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The trust boundary's pure decisions (docs/design.md, "Trust boundary").

func TestRebuildTokens(t *testing.T) {
	now := t0
	tok := func(sid string, age time.Duration) backend.Token {
		return backend.Token{SID: sid, ExternalID: "uid-1", CreatedAt: now.Add(-age)}
	}
	retiring := func(sid string, after time.Duration) tokensv1alpha1.RetiringToken {
		return tokensv1alpha1.RetiringToken{AccountSID: sid, DeleteAfter: metav1.NewTime(now.Add(after))}
	}
	// ownTokens are what the backend lists for the ApiToken: one token made
	// an hour ago and one a minute ago.
	ownTokens := func(older, newer string) []backend.Token {
		return []backend.Token{tok(older, time.Hour), tok(newer, time.Minute)}
	}
	status := func(sid string, retiringTokens ...tokensv1alpha1.RetiringToken) tokensv1alpha1.ApiTokenStatus {
		return tokensv1alpha1.ApiTokenStatus{AccountSID: sid, RetiringTokens: retiringTokens}
	}
	tests := map[string]struct {
		found        []backend.Token
		status       tokensv1alpha1.ApiTokenStatus
		wantCurrent  string
		wantRetiring []tokensv1alpha1.RetiringToken
	}{
		"a forged SID: the newest own token is current, the older retires": {
			ownTokens("TKold", "TKnew"), status("TKforeign"), "TKnew", []tokensv1alpha1.RetiringToken{retiring("TKold", 10*time.Minute)}},
		"listed retiring tokens keep their deadline and are never current": {
			ownTokens("TKa", "TKb"), status("TKforeign", retiring("TKb", time.Minute), retiring("TKforeign2", time.Minute)),
			"TKa", []tokensv1alpha1.RetiringToken{retiring("TKb", time.Minute)}},
		"the status's own current token stays current": {
			ownTokens("TKcur", "TKlost"), status("TKcur"), "TKcur", []tokensv1alpha1.RetiringToken{retiring("TKlost", 10*time.Minute)}},
		"nothing found: no current token": {nil, status("TKforeign", retiring("TKforeign2", 0)), "", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			current, retiringGot := rebuildTokens(tc.found, tc.status, now, 10*time.Minute)
			got := ""
			if current != nil {
				got = current.SID
			}
			if got != tc.wantCurrent {
				t.Errorf("current = %q, want %q", got, tc.wantCurrent)
			}
			if diff := cmp.Diff(tc.wantRetiring, retiringGot); diff != "" {
				t.Errorf("retiring (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTrackKnownTokens(t *testing.T) {
	after := metav1.NewTime(t0.Add(time.Hour))
	st := tokensv1alpha1.ApiTokenStatus{AccountSID: "TKcur", RetiringTokens: []tokensv1alpha1.RetiringToken{{AccountSID: "TKcur", DeleteAfter: after}, {AccountSID: "TKold", DeleteAfter: after}}}
	trackKnownTokens(&st, []string{"TKcur", "TKold", "TKlost"}, t0, time.Minute)
	want := []tokensv1alpha1.RetiringToken{{AccountSID: "TKold", DeleteAfter: after}, {AccountSID: "TKlost", DeleteAfter: metav1.NewTime(t0.Add(time.Minute))}}
	if diff := cmp.Diff(want, st.RetiringTokens); diff != "" {
		t.Errorf("every known token tracked, the current one never retiring (-want +got):\n%s", diff)
	}
	empty := tokensv1alpha1.ApiTokenStatus{}
	trackKnownTokens(&empty, []string{"TKx"}, t0, time.Minute)
	if len(empty.RetiringTokens) != 0 {
		t.Error("a status without a current token lists retiring tokens: the pass that records one lists them")
	}
}

func TestNarrowingPatch(t *testing.T) {
	observed := &backend.Token{Scopes: []string{"a:read", "b:read"}, State: backend.StateEnabled}
	tests := map[string]struct {
		scopes       []string
		disabled     bool
		wantScopes   []string
		wantDisabled bool
	}{
		"fewer scopes":                        {scopes: []string{"a:read"}, wantScopes: []string{"a:read"}},
		"a new scope is never added":          {scopes: []string{"a:read", "b:read", "c:write"}},
		"swapped scopes only lose":            {scopes: []string{"a:read", "c:write"}, wantScopes: []string{"a:read"}},
		"disabled":                            {scopes: []string{"a:read", "b:read"}, disabled: true, wantDisabled: true},
		"no change":                           {scopes: []string{"a:read", "b:read"}},
		"disabled and cleared":                {disabled: true, wantScopes: []string{}, wantDisabled: true},
		"enabled in the spec is not enabling": {scopes: []string{"a:read", "b:read"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			desired := desiredToken(apiToken(func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes, at.Spec.Disabled = tc.scopes, tc.disabled }))
			patch := narrowingPatch(desired, observed)
			if (patch.Scopes == nil) != (tc.wantScopes == nil) || (patch.Scopes != nil && !cmp.Equal(*patch.Scopes, tc.wantScopes)) {
				t.Errorf("scopes patch %v, want %v", patch.Scopes, tc.wantScopes)
			}
			if (patch.State != nil) != tc.wantDisabled {
				t.Errorf("state patch %v, want disabled %v", patch.State, tc.wantDisabled)
			}
		})
	}
	disabled := &backend.Token{Scopes: []string{"a:read"}, State: backend.StateDisabled}
	if p := narrowingPatch(desiredToken(apiToken(func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"a:read"} })), disabled); !p.IsEmpty() {
		t.Errorf("a disabled token is never enabled while blocked: %+v", p)
	}
}

func TestEffectiveDeletionPolicy(t *testing.T) {
	policy := func(allowed ...tokensv1alpha1.DeletionPolicy) *tokensv1alpha1.TokenBackendPolicy {
		return &tokensv1alpha1.TokenBackendPolicy{AllowedDeletionPolicies: allowed}
	}
	const del, dis, orph = tokensv1alpha1.DeletionPolicyDelete, tokensv1alpha1.DeletionPolicyDisable, tokensv1alpha1.DeletionPolicyOrphan
	tests := map[string]struct {
		requested tokensv1alpha1.DeletionPolicy
		policy    *tokensv1alpha1.TokenBackendPolicy
		want      tokensv1alpha1.DeletionPolicy
	}{
		"no policy: as requested":            {orph, nil, orph},
		"empty request is Delete":            {"", nil, del},
		"allowed: as requested":              {dis, policy(del, dis), dis},
		"paused Orphan where only Delete":    {orph, policy(del), del},
		"Orphan where Disable and Orphan ok": {orph, policy(dis, orph), orph},
		"Delete where only Disable":          {del, policy(dis), dis},
		"Delete where only Orphan":           {del, policy(orph), orph},
	}
	for name, tc := range tests {
		if got := effectiveDeletionPolicy(tc.requested, tc.policy); got != tc.want {
			t.Errorf("%s: %s, want %s", name, got, tc.want)
		}
	}
}

func TestConsumesSecret(t *testing.T) {
	secretRef := func(name string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "authToken"}}
	}
	tests := map[string]struct {
		spec corev1.PodSpec
		want bool
	}{
		"secret volume": {spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}}}, want: true},
		"projected volume": {spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}}}}}}, want: true},
		"env secretKeyRef":             {spec: corev1.PodSpec{Containers: []corev1.Container{{Env: []corev1.EnvVar{{Name: "T", ValueFrom: secretRef("creds")}}}}}, want: true},
		"envFrom in an init container": {spec: corev1.PodSpec{InitContainers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}}}}, want: true},
		"another Secret":               {spec: corev1.PodSpec{Containers: []corev1.Container{{Env: []corev1.EnvVar{{Name: "T", ValueFrom: secretRef("payments-db")}}}}}},
		"a ConfigMap of that name": {spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}}}},
		"nothing": {},
	}
	for name, tc := range tests {
		if got := consumesSecret(&tc.spec, "creds"); got != tc.want {
			t.Errorf("%s: consumesSecret = %v, want %v", name, got, tc.want)
		}
	}
}

func TestLongNoncesActOnceInTheirRecordedForm(t *testing.T) {
	long := strings.Repeat("n", 10_000)
	if got := recordedNonce(long); !strings.HasPrefix(got, "sha256:") || len(got) != len("sha256:")+32 {
		t.Fatalf("recorded form %q", got)
	}
	if recordedNonce("2026-q4") != "2026-q4" {
		t.Error("a short nonce is kept as it is")
	}
	at := apiToken(func(at *tokensv1alpha1.ApiToken) {
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: long}
	})
	c, due := dueCredentialChange(at, t0)
	if !due || c.nonce != recordedNonce(long) {
		t.Fatalf("due %v nonce %q", due, c.nonce)
	}
	at.Status.LastHandledReset = c.nonce
	if _, due := dueCredentialChange(at, t0); due {
		t.Error("a long nonce handled once is due again")
	}
	at.Status.LastHandledReset = ""
	at.Status.History = []tokensv1alpha1.CredentialChange{change(tokensv1alpha1.CredentialsReset, c.nonce, "TK1", 2)}
	if _, due := dueCredentialChange(at, t0); due {
		t.Error("a long nonce found in the history is due again")
	}
}

func TestRotationDeferredAtMostEightRetiring(t *testing.T) {
	at := apiToken(func(at *tokensv1alpha1.ApiToken) {
		at.Annotations = map[string]string{tokensv1alpha1.RotateAnnotation: "r9", tokensv1alpha1.ResetAnnotation: "leak"}
		at.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
		for i := range maxRetiringTokens {
			at.Status.RetiringTokens = append(at.Status.RetiringTokens, tokensv1alpha1.RetiringToken{AccountSID: "TK" + itoa(int64(i))})
		}
	})
	c, due := dueCredentialChange(at, t0)
	if !due || c.kind != tokensv1alpha1.CredentialsReset {
		t.Fatalf("a reset is never deferred: due %v kind %s", due, c.kind)
	}
	at.Status.LastHandledReset = "leak"
	if _, due := dueCredentialChange(at, t0); due || !rotationDeferred(at, t0) {
		t.Errorf("a rotation with overlap while 8 are retiring: due %v, deferred %v", due, rotationDeferred(at, t0))
	}
	at.Status.RetiringTokens = at.Status.RetiringTokens[1:]
	if _, due := dueCredentialChange(at, t0); !due || rotationDeferred(at, t0) {
		t.Error("the rotation runs once a retiring token is gone")
	}
	markReadyOrDeferred(at, t0)
	at.Status.RetiringTokens = append(at.Status.RetiringTokens, tokensv1alpha1.RetiringToken{AccountSID: "TK9"})
	markReadyOrDeferred(at, t0)
	if c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionReconciling); c == nil || c.Reason != tokensv1alpha1.ReasonRotationDeferred || c.Status != metav1.ConditionTrue {
		t.Errorf("Reconciling %+v, want True RotationDeferred", c)
	}
}

func TestOwnedTokens(t *testing.T) {
	o := newOwnedTokens()
	if o.confirmed("u", "TK1") {
		t.Fatal("nothing is confirmed before a read")
	}
	o.add("u", "TK1")
	if !o.confirmed("u", "TK1") || o.confirmed("other", "TK1") {
		t.Error("confirmation is per ApiToken UID")
	}
	if _, complete := o.known("u"); complete {
		t.Error("one confirmed read is not every token")
	}
	o.replace("u", []string{"TK2", "TK3"})
	if sids, complete := o.known("u"); !complete || !cmp.Equal(sids, []string{"TK2", "TK3"}) {
		t.Errorf("after a lookup: %v %v", sids, complete)
	}
	o.remove("u", "TK2")
	o.forget("u")
	if o.confirmed("u", "TK3") {
		t.Error("forgotten")
	}
}

func TestNarrowsScopesOnlyWhenTheBackendDoesNotAdmit(t *testing.T) {
	tests := map[string]struct {
		blocked error
		want    bool
	}{
		"policy tightened":    {stalled(tokensv1alpha1.ReasonPolicyViolation, "x"), true},
		"namespace lost":      {stalled(tokensv1alpha1.ReasonNamespaceNotAllowed, "x"), true},
		"backend refused 422": {stalled(tokensv1alpha1.ReasonBackendRejected, "x"), false},
		"Secret conflict":     {secretConflictError{name: "s"}, false},
	}
	for name, tc := range tests {
		if got := narrowsScopes(tc.blocked); got != tc.want {
			t.Errorf("%s: narrowsScopes = %v, want %v", name, got, tc.want)
		}
	}
}
