package controllers

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

func apiToken(mutate func(*tokensv1alpha1.ApiToken)) *tokensv1alpha1.ApiToken {
	at := &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Name: "etl", Namespace: "analytics", UID: "uid-1"},
		Spec: tokensv1alpha1.ApiTokenSpec{
			PrimaryContact: "ops@example.com",
			Scopes:         []string{"reports:read", "actions:read", "reports:read"},
		},
	}
	if mutate != nil {
		mutate(at)
	}
	return at
}

func TestDesiredToken(t *testing.T) {
	tests := map[string]struct {
		at   *tokensv1alpha1.ApiToken
		want backend.CreateRequest
	}{
		"defaults": {
			at: apiToken(nil),
			want: backend.CreateRequest{Name: "etl", PrimaryContact: "ops@example.com", DeveloperEmails: []string{},
				Scopes: []string{"actions:read", "reports:read"}, State: "Enabled", ExternalID: "uid-1"},
		},
		"everything set": {
			at: apiToken(func(at *tokensv1alpha1.ApiToken) {
				at.Spec.DisplayName = "Reporting ETL"
				at.Spec.Description = "nightly"
				at.Spec.APIVersion = ptr.To[int32](14)
				at.Spec.DeveloperEmails = []string{"b@example.com", "a@example.com"}
				at.Spec.Scopes = nil
				at.Spec.Disabled = true
			}),
			want: backend.CreateRequest{Name: "Reporting ETL", Description: "nightly", APIVersion: ptr.To(14), PrimaryContact: "ops@example.com",
				DeveloperEmails: []string{"a@example.com", "b@example.com"}, Scopes: []string{}, State: "Disabled", ExternalID: "uid-1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, desiredToken(tc.at)); diff != "" {
				t.Errorf("desiredToken (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTokenPatch(t *testing.T) {
	inSync := backend.Token{Name: "etl", APIVersion: 16, PrimaryContact: "ops@example.com", DeveloperEmails: []string{},
		Scopes: []string{"actions:read", "reports:read"}, State: "Enabled"}
	desired := desiredToken(apiToken(nil))
	tests := map[string]struct {
		desired     func(*backend.CreateRequest)
		observed    func(*backend.Token)
		wantFields  []string
		wantWidened []string
	}{
		"in sync":                           {},
		"scope order and duplicates differ": {observed: func(t *backend.Token) { t.Scopes = []string{"reports:read", "actions:read", "actions:read"} }},
		"scope added in backend":            {observed: func(t *backend.Token) { t.Scopes = append(t.Scopes, "invoices:write") }, wantFields: []string{"scopes"}, wantWidened: []string{"scopes"}},
		"scope removed in backend":          {observed: func(t *backend.Token) { t.Scopes = []string{"reports:read"} }, wantFields: []string{"scopes"}},
		"re-enabled in backend": {
			desired:    func(d *backend.CreateRequest) { d.State = "Disabled" },
			wantFields: []string{"state"}, wantWidened: []string{"state"},
		},
		"disabled in backend":   {observed: func(t *backend.Token) { t.State = "Disabled" }, wantFields: []string{"state"}},
		"renamed and described": {observed: func(t *backend.Token) { t.Name = "x"; t.Description = "y" }, wantFields: []string{"name", "description"}},
		"contact and e-mails": {observed: func(t *backend.Token) {
			t.PrimaryContact = "a@example.com"
			t.DeveloperEmails = []string{"z@example.com"}
		}, wantFields: []string{"primaryContact", "developerEmails"}},
		"declared version rises": {desired: func(d *backend.CreateRequest) { d.APIVersion = ptr.To(17) }, wantFields: []string{"apiVersion"}},
		"declared version below": {desired: func(d *backend.CreateRequest) { d.APIVersion = ptr.To(12) }},
		"version omitted":        {observed: func(t *backend.Token) { t.APIVersion = 12 }},
		"nil and empty lists":    {observed: func(t *backend.Token) { t.DeveloperEmails = nil }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d, o := desired, inSync
			d.Scopes, o.Scopes = append([]string(nil), desired.Scopes...), append([]string(nil), inSync.Scopes...)
			if tc.desired != nil {
				tc.desired(&d)
			}
			if tc.observed != nil {
				tc.observed(&o)
			}
			patch, widened := tokenPatch(d, &o)
			if diff := cmp.Diff(tc.wantFields, patchedFields(patch)); diff != "" {
				t.Errorf("patched fields (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWidened, widened); diff != "" {
				t.Errorf("widened (-want +got):\n%s", diff)
			}
			if patch.IsEmpty() != (len(tc.wantFields) == 0) {
				t.Errorf("IsEmpty = %v", patch.IsEmpty())
			}
		})
	}
}

func TestResetDue(t *testing.T) {
	tests := map[string]struct {
		annotation, lastHandled string
		want                    bool
	}{
		"no annotation":         {"", "", false},
		"annotation removed":    {"", "incident-1", false},
		"new nonce":             {"incident-1", "", true},
		"same nonce":            {"incident-1", "incident-1", false},
		"changed nonce":         {"incident-2", "incident-1", true},
		"back to an older one":  {"incident-1", "incident-2", true},
		"whitespace is a value": {" ", "", true},
	}
	for name, tc := range tests {
		if got := resetDue(tc.annotation, tc.lastHandled); got != tc.want {
			t.Errorf("%s: resetDue(%q, %q) = %v, want %v", name, tc.annotation, tc.lastHandled, got, tc.want)
		}
	}
}

func TestBackendReadDue(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const resync = 10 * time.Minute
	confirmed := func(at *tokensv1alpha1.ApiToken) {
		at.Generation, at.Status.ObservedGeneration = 2, 2
		at.Status.Conditions = []metav1.Condition{{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue}}
	}
	tests := map[string]struct {
		mutate        func(*tokensv1alpha1.ApiToken)
		lastRead      time.Time
		specConfirmed bool
		want          bool
	}{
		"read recently":                    {lastRead: now.Add(-time.Minute), want: false},
		"not read since the process began": {lastRead: time.Time{}, want: true},
		"resync interval passed":           {lastRead: now.Add(-resync), want: true},
		"a second short of the interval":   {lastRead: now.Add(-resync + time.Second), want: false},
		"new generation":                   {mutate: func(at *tokensv1alpha1.ApiToken) { at.Generation = 3 }, lastRead: now, want: true},
		// A new generation that changed only what the backend does not hold (the
		// Secret's template, say) costs no read.
		"new generation, backend fields confirmed": {mutate: func(at *tokensv1alpha1.ApiToken) { at.Generation = 3 }, lastRead: now, specConfirmed: true, want: false},
		"last pass did not end Ready, backend fields confirmed": {
			mutate:   func(at *tokensv1alpha1.ApiToken) { at.Status.Conditions[0].Status = metav1.ConditionFalse },
			lastRead: now, specConfirmed: true, want: true,
		},
		"last pass did not end Ready": {
			mutate:   func(at *tokensv1alpha1.ApiToken) { at.Status.Conditions[0].Status = metav1.ConditionFalse },
			lastRead: now, want: true,
		},
		// A reset or rotation needs no read first (a vanished token answers 404):
		// one backend call per credential change.
		"reset requested, read recently": {
			mutate: func(at *tokensv1alpha1.ApiToken) {
				at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "incident-1"}
			},
			lastRead: now, want: false,
		},
		"reset already handled": {
			mutate: func(at *tokensv1alpha1.ApiToken) {
				at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "incident-1"}
				at.Status.LastHandledReset = "incident-1"
			},
			lastRead: now, want: false,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			at := apiToken(confirmed)
			if tc.mutate != nil {
				tc.mutate(at)
			}
			if diff := cmp.Diff(tc.want, backendReadDue(at, tc.lastRead, now, resync, tc.specConfirmed)); diff != "" {
				t.Errorf("backendReadDue (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIdempotencyKeys(t *testing.T) {
	at := apiToken(func(at *tokensv1alpha1.ApiToken) { at.ResourceVersion = "42" })
	if createKey(at, "", false) == createKey(at, "TK1", false) || createKey(at, "TK1", false) == createKey(at, "TK2", false) {
		t.Error("a replacement create must not replay an earlier one")
	}
	if createKey(at, "", true) == createKey(at, "", false) {
		t.Error("a create after a lookup must not replay the first create, whose token may have been deleted")
	}
	later := at.DeepCopy()
	later.ResourceVersion = "43"
	if createKey(at, "", true) == createKey(later, "", true) {
		t.Error("a create after a recorded pass must not replay the create of an earlier pass")
	}
	if createKey(at, "", true) != createKey(at.DeepCopy(), "", true) {
		t.Error("the same pass must repeat its own create (a lost response is replayed)")
	}
	if resetKey(at, "a") == resetKey(at, "b") {
		t.Error("different nonces share a reset key")
	}
	other := apiToken(func(at *tokensv1alpha1.ApiToken) { at.UID = "uid-2" })
	if resetKey(at, "a") == resetKey(other, "a") || createKey(at, "", false) == createKey(other, "", false) {
		t.Error("keys of different ApiTokens collide")
	}
	if long := resetKey(at, string(make([]byte, 100000))); len(long) > 255 {
		t.Errorf("reset key of a long nonce is %d bytes; the Token Service takes at most 255", len(long))
	}
}

func TestMayHaveCreated(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		created    time.Time
		conditions bool
		want       bool
	}{
		"fresh, never reconciled":       {created: now.Add(-time.Minute), want: false},
		"fresh, earlier pass wrote":     {created: now.Add(-time.Minute), conditions: true, want: true},
		"older than the replay window":  {created: now.Add(-13 * time.Hour), want: true},
		"just inside the replay window": {created: now.Add(-11 * time.Hour), want: false},
	}
	for name, tc := range tests {
		at := apiToken(func(at *tokensv1alpha1.ApiToken) { at.CreationTimestamp = metav1.NewTime(tc.created) })
		if tc.conditions {
			at.Status.Conditions = []metav1.Condition{{Type: "Ready"}}
		}
		if got := mayHaveCreated(at, now); got != tc.want {
			t.Errorf("%s: mayHaveCreated = %v, want %v", name, got, tc.want)
		}
	}
}

func TestStallOrWait(t *testing.T) {
	tests := map[string]struct {
		err       error
		wantStall string
		wantWait  string
	}{
		"secret conflict":             {err: secretConflictError{name: "x"}, wantStall: tokensv1alpha1.ReasonSecretConflict},
		"wrapped secret conflict":     {err: fmt.Errorf("write: %w", secretConflictError{name: "x"}), wantStall: tokensv1alpha1.ReasonSecretConflict},
		"APIError without a sentinel": {err: &backend.APIError{StatusCode: 422, Title: "bad", Fields: []backend.FieldError{{Field: "scopes[0]", Detail: "unknown"}}}, wantStall: ""},
		"stalled":                     {err: stalled(tokensv1alpha1.ReasonBackendNotFound, "gone"), wantStall: tokensv1alpha1.ReasonBackendNotFound},
		"waiting":                     {err: &waitingError{reason: tokensv1alpha1.ReasonBackendNotReady}, wantWait: tokensv1alpha1.ReasonBackendNotReady},
		"backend 422, wrapped": {
			err:       fmt.Errorf("create token: %w", backend.NewAPIError("create", 422, []backend.FieldError{{Field: "scopes[0]"}}, 0)),
			wantStall: tokensv1alpha1.ReasonBackendRejected},
		"backend 400":                     {err: backend.NewAPIError("create", 400, nil, 0), wantStall: tokensv1alpha1.ReasonBackendRejected},
		"backend 401":                     {err: backend.NewAPIError("get", 401, nil, 0), wantWait: tokensv1alpha1.ReasonBackendUnauthorized},
		"backend 403":                     {err: backend.NewAPIError("get", 403, nil, 0), wantWait: tokensv1alpha1.ReasonBackendUnauthorized},
		"backend 429 with Retry-After":    {err: backend.NewAPIError("reset", 429, nil, time.Minute), wantWait: tokensv1alpha1.ReasonBackendThrottled},
		"backend 429 without Retry-After": {err: backend.NewAPIError("reset", 429, nil, 0)},
		"backend 503":                     {err: backend.NewAPIError("get", 503, nil, 0)},
		"backend 404":                     {err: backend.NewAPIError("get", 404, nil, 0)},
		"backend 409":                     {err: backend.NewAPIError("update", 409, nil, 0)},
		"plain error":                     {err: errTest},
	}
	for name, tc := range tests {
		stall, wait := stallOrWait(apiToken(nil), tc.err)
		gotStall, gotWait := "", ""
		if stall != nil {
			gotStall = stall.reason
		}
		if wait != nil {
			gotWait = wait.reason
		}
		if gotStall != tc.wantStall || gotWait != tc.wantWait {
			t.Errorf("%s: stall %q wait %q, want %q %q", name, gotStall, gotWait, tc.wantStall, tc.wantWait)
		}
	}
}

var errTest = errTestType("boom")

type errTestType string

func (e errTestType) Error() string { return string(e) }
