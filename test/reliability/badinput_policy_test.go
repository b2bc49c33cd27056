package reliability

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// The bad input that a TokenBackend's policy and catalog refuse: at admission
// (the ValidatingAdmissionPolicy of config/admission) and, where admission did
// not see it, at reconcile (Stalled, PolicyViolation, nothing in the backend).

// policyBackend is a TokenBackend whose catalog this test publishes itself, as
// the operator would (no operator runs in the admission test).
func policyBackend(t *testing.T, name string, policy *tokensv1alpha1.TokenBackendPolicy, catalog *tokensv1alpha1.TokenBackendCatalog) {
	t.Helper()
	tb := framework.TokenBackendFor(name, "http://127.0.0.1:1", time.Minute)
	tb.Spec.Policy = policy
	mustCreate(t, tb)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	tb.Status.Catalog = catalog
	if err := k8s.Status().Update(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
}

func demoCatalog() *tokensv1alpha1.TokenBackendCatalog {
	c := &tokensv1alpha1.TokenBackendCatalog{APIVersions: []int32{12, 13, 14, 15, 16}, Contacts: []string{"admin@example.com", "ops@example.com"}}
	for _, category := range []string{"accounts", "actions", "deals", "reports"} {
		c.Scopes = append(c.Scopes, category+":read", category+":write")
	}
	return c
}

func stringsOf(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

func TestAdmissionRefusesPolicyViolations(t *testing.T) {
	uninstall, err := framework.InstallAdmissionPolicy(t.Context(), k8s, filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := uninstall(); err != nil {
			t.Errorf("uninstall the admission policy: %v", err)
		}
	})
	ns := "badinput-policy-admission"
	createNamespace(t, ns)
	policyBackend(t, "badinput-policy", &tokensv1alpha1.TokenBackendPolicy{
		AllowedScopes:           []string{"reports:*", "*:read"},
		AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete},
	}, demoCatalog())
	// The largest policy, catalog and spec the CRDs accept stay within the CEL
	// cost budget: a policy that ran out of it would admit (failurePolicy Ignore).
	largest := &tokensv1alpha1.TokenBackendCatalog{Scopes: append(stringsOf(256, "c%d:read"), stringsOf(256, "c%d:write")...)}
	policyBackend(t, "badinput-policy-max", &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: stringsOf(128, "c%d:*")}, largest)

	token := func(backendName string, mutate func(*tokensv1alpha1.ApiToken)) *tokensv1alpha1.ApiToken {
		at := newToken(ns, "bad", backendName)
		if mutate != nil {
			mutate(at)
		}
		return at
	}
	probe := token("badinput-policy", func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"accounts:write"} })
	if _, err := framework.WaitUntilRefused(t.Context(), k8s, probe); err != nil {
		t.Fatalf("the policy of badinput-policy is not enforced: %v", err)
	}

	cases := map[string]struct {
		at   *tokensv1alpha1.ApiToken
		want string
	}{
		"policy: scope not allowed": {token("badinput-policy", func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "accounts:write"} }),
			"scopes [accounts:write] are not allowed by TokenBackend badinput-policy"},
		"policy: every scope not allowed is named": {token("badinput-policy", func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes = []string{"deals:write", "reports:write", "accounts:write"}
		}),
			"scopes [deals:write, accounts:write] are not allowed by TokenBackend badinput-policy"},
		"policy: deletionPolicy Orphan not allowed": {token("badinput-policy", func(at *tokensv1alpha1.ApiToken) { at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan }),
			"deletionPolicy Orphan is not allowed by TokenBackend badinput-policy"},
		"policy: deletionPolicy Disable not allowed": {token("badinput-policy", func(at *tokensv1alpha1.ApiToken) { at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyDisable }),
			"deletionPolicy Disable is not allowed by TokenBackend badinput-policy"},
		"catalog: unknown scope": {token("badinput-policy", func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"ghost:read"} }),
			"scopes [ghost:read] are not in the catalog of TokenBackend badinput-policy"},
		"catalog: unknown contact": {token("badinput-policy", func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "stranger@example.com" }),
			"primaryContact stranger@example.com is not a contact in the catalog of TokenBackend badinput-policy"},
		"catalog: unknown apiVersion": {token("badinput-policy", func(at *tokensv1alpha1.ApiToken) { at.Spec.APIVersion = ptr.To[int32](17) }),
			"apiVersion 17 is not in the catalog of TokenBackend badinput-policy"},
		"largest sizes: the one scope not allowed": {token("badinput-policy-max", func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes = append(append(stringsOf(128, "c%d:read"), stringsOf(127, "c%d:write")...), "c200:read")
		}), "scopes [c200:read] are not allowed by TokenBackend badinput-policy-max"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			badInputCount++
			err := k8s.Create(t.Context(), tc.at)
			if err == nil {
				_ = k8s.Delete(t.Context(), tc.at)
				t.Fatalf("admitted; want a refusal naming %q", tc.want)
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'apitoken-policy'") {
				t.Fatalf("err %v, want Invalid from apitoken-policy", err)
			}
			if !strings.HasSuffix(err.Error(), tc.want) {
				t.Fatalf("err %q does not end with %q", err, tc.want)
			}
		})
	}

	t.Run("policy: a change that adds a scope not allowed", func(t *testing.T) {
		badInputCount++
		at := newToken(ns, "stored", "badinput-policy")
		mustCreate(t, at)
		at.Spec.Scopes = append(at.Spec.Scopes, "accounts:write")
		err := k8s.Update(t.Context(), at)
		if !apierrors.IsInvalid(err) || !strings.HasSuffix(err.Error(), "scopes [accounts:write] are not allowed by TokenBackend badinput-policy") {
			t.Fatalf("update: %v", err)
		}
		if got := getToken(t, ns, "stored"); len(got.Spec.Scopes) != 1 {
			t.Errorf("the refused change was stored: %v", got.Spec.Scopes)
		}
	})
	list := &tokensv1alpha1.ApiTokenList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, at := range list.Items {
		if at.Name == "bad" {
			t.Error("a refused manifest was stored")
		}
	}
}

// TestBadPolicyStallsWithReasonAndEvent runs without the admission policy, as a
// cluster that did not install it (or an ApiToken admitted before its backend
// had a catalog): the operator refuses on its own, before any backend call.
func TestBadPolicyStallsWithReasonAndEvent(t *testing.T) {
	w := newWorld(t, "badpolicy", worldOptions{resync: 5 * time.Second})
	ns := "badinput-policy-stall"
	createNamespace(t, ns)
	// A second TokenBackend to the same tokenservice, for one tenant.
	tenant := framework.TokenBackendFor("badinput-tenant", w.service.URL, 5*time.Second)
	tenant.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{
		AllowedScopes:           []string{"reports:*"},
		AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete, tokensv1alpha1.DeletionPolicyDisable},
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tenant) })
	if err := controlPlane.CreateTokenBackend(t.Context(), tenant); err != nil {
		t.Fatal(err)
	}

	cases := map[string]struct {
		change  func(*tokensv1alpha1.ApiToken)
		message string
	}{
		"scope outside the policy":   {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "actions:read"} }, "scopes [actions:read] are not allowed by TokenBackend badinput-tenant"},
		"scope outside the catalog":  {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:admin"} }, "scopes [reports:admin] are not in the catalog of TokenBackend badinput-tenant"},
		"contact outside catalog":    {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "nobody@example.com" }, "primaryContact nobody@example.com is not a contact in the catalog of TokenBackend badinput-tenant"},
		"apiVersion outside catalog": {func(at *tokensv1alpha1.ApiToken) { at.Spec.APIVersion = ptr.To[int32](11) }, "apiVersion 11 is not in the catalog of TokenBackend badinput-tenant"},
		"deletion policy not allowed": {func(at *tokensv1alpha1.ApiToken) { at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan },
			"deletionPolicy Orphan is not allowed by TokenBackend badinput-tenant"},
	}
	for name, tc := range cases {
		t.Run("policy on create: "+name, func(t *testing.T) {
			badInputCount++
			at := newToken(ns, "create-"+strings.ToLower(strings.ReplaceAll(name, " ", "-")), tenant.Name)
			tc.change(at)
			mustCreate(t, at)
			expectPolicyStall(t, at, tc.message)
			tokens, err := w.service.Admin.FindByExternalID(t.Context(), string(getToken(t, ns, at.Name).UID))
			if err != nil || len(tokens) != 0 {
				t.Errorf("%d backend tokens (%v), want none", len(tokens), err)
			}
		})
	}

	t.Run("policy tightened on a live token", func(t *testing.T) {
		badInputCount++
		at := newToken(ns, "tightened", tenant.Name)
		at.Spec.Scopes = []string{"reports:read", "reports:write"}
		mustCreate(t, at)
		if err := settle(&trialState{ns: ns, name: at.Name}); err != nil {
			t.Fatal(err)
		}
		sid := getToken(t, ns, at.Name).Status.AccountSID
		tokenBefore, _, err := w.service.Admin.Get(t.Context(), sid, "")
		if err != nil {
			t.Fatal(err)
		}
		secretBefore := &corev1.Secret{}
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: at.Name}, secretBefore); err != nil {
			t.Fatal(err)
		}
		tightened := &tokensv1alpha1.TokenBackend{}
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(tenant), tightened); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(tightened.DeepCopy())
		tightened.Spec.Policy.AllowedScopes = []string{"reports:read"}
		if err := k8s.Patch(t.Context(), tightened, patch); err != nil {
			t.Fatal(err)
		}
		expectPolicyStall(t, at, "scopes [reports:write] are not allowed by TokenBackend badinput-tenant")

		// Never narrowed silently: the token, its Secret and its consumers are as they were.
		tokenAfter, _, err := w.service.Admin.Get(t.Context(), sid, "")
		if err != nil || tokenAfter.ETag != tokenBefore.ETag {
			t.Errorf("the backend token changed (%v)", err)
		}
		secretAfter := &corev1.Secret{}
		_ = k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: at.Name}, secretAfter)
		if secretAfter.ResourceVersion != secretBefore.ResourceVersion {
			t.Error("the Secret changed")
		}
		if got := w.service.VerifyStatus(t.Context(), framework.CredentialsOf(secretAfter), "reports:write"); got != 200 {
			t.Errorf("verify reports:write with the Secret: %d, want 200", got)
		}

		// Deleting it still releases its backend token by its deletion policy.
		if err := k8s.Delete(t.Context(), getToken(t, ns, at.Name)); err != nil {
			t.Fatal(err)
		}
		if err := settle(&trialState{ns: ns, name: at.Name, deleted: true}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.service.Admin.Get(t.Context(), sid, ""); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("backend token after delete: %v, want not found", err)
		}
	})
	t.Logf("bad-input cases so far: %d", badInputCount)
}

// expectPolicyStall waits until the ApiToken is Stalled for a PolicyViolation
// with the message, for its current generation, with a Warning event.
func expectPolicyStall(t *testing.T, at *tokensv1alpha1.ApiToken, message string) {
	t.Helper()
	err := framework.Poll(30*time.Second, func() error {
		got := getToken(t, at.Namespace, at.Name)
		c := meta.FindStatusCondition(got.Status.Conditions, tokensv1alpha1.ConditionStalled)
		switch {
		case c == nil || c.Status != metav1.ConditionTrue || c.Reason != tokensv1alpha1.ReasonPolicyViolation || got.Status.ObservedGeneration != got.Generation:
			return fmt.Errorf("Stalled %+v, want True/PolicyViolation", c)
		case c.Message != message:
			return fmt.Errorf("message %q, want %q", c.Message, message)
		case !meta.IsStatusConditionFalse(got.Status.Conditions, tokensv1alpha1.ConditionReady):
			return errors.New("Ready is not False")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := framework.Poll(10*time.Second, func() error {
		return hasWarning(t, at.Namespace, at.Name, tokensv1alpha1.ReasonPolicyViolation)
	}); err != nil {
		t.Error(err)
	}
}
