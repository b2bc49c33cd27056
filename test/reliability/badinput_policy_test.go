package reliability

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// The bad input that a TokenBackend's policy and catalog refuse: at admission
// (the ValidatingAdmissionPolicy of config/admission) and, where admission did
// not see it, at reconcile (Stalled, PolicyViolation, nothing in the backend).

// createPolicyBackend creates the TokenBackend of a policy case with the
// catalog the case says it has published, as the operator would (no operator
// runs in the admission test).
func createPolicyBackend(t *testing.T, b framework.PolicyBackend) {
	t.Helper()
	tb := b.TokenBackend()
	catalog := tb.Status.Catalog
	mustCreate(t, tb)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	if catalog == nil {
		return
	}
	tb.Status.Catalog = catalog
	if err := k8s.Status().Update(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
}

// TestAdmissionRefusesPolicyViolations runs framework.PolicyCases against the
// admission policy of config/admission (controllers' TestPolicyCasesAtReconcile
// runs them against the operator's own rules): each refusal is Invalid, from
// apitoken-policy, with the case's message; every other case is admitted.
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
	framework.CreateNamespace(t, k8s, ns, nil)
	cases := framework.PolicyCases()
	created := map[string]bool{}
	for _, tc := range cases {
		if !created[tc.Backend.Name] {
			created[tc.Backend.Name] = true
			createPolicyBackend(t, tc.Backend)
		}
	}
	// The API server reads the TokenBackends through a watch: each refusal is
	// awaited (a server-side dry run, until refused). The admitted cases come
	// after the refused ones of their backend, when admission has seen it whole,
	// catalog included: before, anything would be admitted.
	refused := slices.DeleteFunc(slices.Clone(cases), func(c framework.PolicyCase) bool { return c.Refusal == "" })
	admitted := slices.DeleteFunc(slices.Clone(cases), func(c framework.PolicyCase) bool { return c.Refusal != "" })
	for _, tc := range append(refused, admitted...) {
		t.Run(tc.Name, func(t *testing.T) {
			badInputCount++
			at := tc.ApiToken(ns, "bad")
			if tc.Refusal == "" {
				if err := k8s.Create(t.Context(), at, client.DryRunAll); err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			refusal, err := framework.WaitUntilRefused(t.Context(), k8s, at)
			if err != nil {
				t.Fatalf("want a refusal naming %q: %v", tc.Refusal, err)
			}
			if !strings.Contains(refusal.Error(), "ValidatingAdmissionPolicy 'apitoken-policy'") || !strings.HasSuffix(refusal.Error(), tc.Refusal) {
				t.Fatalf("refused with %q, want apitoken-policy's %q", refusal, tc.Refusal)
			}
		})
	}

	t.Run("a change that adds a scope not allowed", func(t *testing.T) {
		badInputCount++
		at := newToken(ns, "stored", "policy-tenant")
		mustCreate(t, at)
		at.Spec.Scopes = append(at.Spec.Scopes, "accounts:write")
		err := k8s.Update(t.Context(), at)
		if !apierrors.IsInvalid(err) || !strings.HasSuffix(err.Error(), "scopes [accounts:write] are not allowed by TokenBackend policy-tenant") {
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
	framework.CreateNamespace(t, k8s, ns, nil)
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
			expectStalled(t, at, tokensv1alpha1.ReasonPolicyViolation, tc.message, true)
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
		expectStalled(t, at, tokensv1alpha1.ReasonPolicyViolation, "scopes [reports:write] are not allowed by TokenBackend badinput-tenant", true)

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
