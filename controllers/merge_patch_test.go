package controllers

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// TestObjectMergePatch: applied to before, the patch gives after, for the
// changes a status goes through; and it holds only what changed.
func TestObjectMergePatch(t *testing.T) {
	cases := []struct {
		name, before, after, want string
	}{
		{"unchanged", `{"a":1,"b":[1,2]}`, `{"a":1,"b":[1,2]}`, `{}`},
		{"a member set", `{"a":1}`, `{"a":1,"b":"x"}`, `{"b":"x"}`},
		{"a member changed", `{"a":1,"b":"x"}`, `{"a":2,"b":"x"}`, `{"a":2}`},
		{"a member dropped (omitempty)", `{"a":1,"b":"x"}`, `{"a":1}`, `{"b":null}`},
		{"an array replaced whole", `{"c":[{"type":"Ready","status":"False"}]}`, `{"c":[{"type":"Ready","status":"True"}]}`, `{"c":[{"type":"Ready","status":"True"}]}`},
		{"a nested object, member by member", `{"o":{"x":1,"y":2}}`, `{"o":{"x":1,"z":3}}`, `{"o":{"y":null,"z":3}}`},
		{"a nested object unchanged in a changed parent", `{"o":{"x":1},"a":1}`, `{"o":{"x":1},"a":2}`, `{"a":2}`},
		{"an object replacing a value", `{"o":"s"}`, `{"o":{"x":1}}`, `{"o":{"x":1}}`},
		{"everything dropped", `{"a":1,"o":{"x":1}}`, `{}`, `{"a":null,"o":null}`},
		{"strings that look like JSON", `{"m":"a,\"b\":{}}","n":[{"s":"}]"}]}`, `{"m":"a,\"b\":{}} ","n":[{"s":"}]"}]}`, `{"m":"a,\"b\":{}} "}`},
		{"empty to full", `{}`, `{"a":[],"b":{},"d":true}`, `{"a":[],"b":{},"d":true}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			patch, err := objectMergePatch([]byte(c.before), []byte(c.after))
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, patch, []byte(c.want)) {
				t.Errorf("patch %s, want %s", patch, c.want)
			}
			applied, err := jsonpatch.MergePatch([]byte(c.before), patch)
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, applied, []byte(c.after)) {
				t.Errorf("before + patch = %s, want %s", applied, c.after)
			}
		})
	}
	for _, bad := range []string{`[1]`, `{"a":1`, `{"a" 1}`, `{"a":"x}`, `{a:1}`} {
		if _, err := objectMergePatch([]byte(bad), []byte(`{}`)); err == nil {
			t.Errorf("%s: no error, want one (not an object as json.Marshal writes it)", bad)
		}
	}
}

// TestStatusMergePatchOfRealStatuses: the patches between the statuses a
// token goes through give, applied, the next status, as json-patch's would.
func TestStatusMergePatchOfRealStatuses(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC))
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns", Generation: 1}}
	var statuses []tokensv1alpha1.ApiTokenStatus
	statuses = append(statuses, at.Status)
	markReconciling(at, tokensv1alpha1.ReasonBackendNotReady, `backend "default" is not ready: "quoted", {braces}`)
	statuses = append(statuses, *at.Status.DeepCopy())
	at.Status.AccountSID, at.Status.State, at.Status.SecretName = "TK1", tokensv1alpha1.TokenState("Active"), "t"
	at.Status.CredentialsIssuedAt = &t0
	at.Status.History = []tokensv1alpha1.CredentialChange{{Type: tokensv1alpha1.CredentialsCreated, Time: t0, AccountSID: "TK1", Generation: 1}}
	markReady(at)
	statuses = append(statuses, *at.Status.DeepCopy())
	at.Status.CredentialsIssuedAt, at.Status.RetiringTokens = nil, []tokensv1alpha1.RetiringToken{{AccountSID: "TK0", DeleteAfter: t0}}
	statuses = append(statuses, *at.Status.DeepCopy(), tokensv1alpha1.ApiTokenStatus{})
	for i := 1; i < len(statuses); i++ {
		before, _ := json.Marshal(statuses[i-1])
		after, _ := json.Marshal(statuses[i])
		patch, err := objectMergePatch(before, after)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := jsonpatch.CreateMergePatch(before, after)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, patch, theirs) {
			t.Errorf("step %d: patch %s, json-patch's %s", i, patch, theirs)
		}
		applied, err := jsonpatch.MergePatch(before, patch)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, applied, after) {
			t.Errorf("step %d: before + patch = %s, want %s", i, applied, after)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
