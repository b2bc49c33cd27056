package controllers

// Admission that a tenant gains no power through and that never blocks incident
// response: apitoken-policy (config/admission) admits an update that only
// disables or narrows a token its TokenBackend no longer allows, and refuses
// restart targets the requesting user may not patch; the CRD keeps spec.adopt
// until the ApiToken owns a token, and holds every SID to a strict pattern.

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// noBackend is a TokenBackend that does not exist: an ApiToken naming it is only
// stored, never acted on, so that admission tests write what they like.
const noBackend = "no-such-backend"

// tryUpdate reads the ApiToken (as admin), applies mutate, and updates it once
// with c, retrying only on a conflict: the operator writes finalizers and status
// meanwhile. It returns the update's error.
func tryUpdate(t *testing.T, c client.Client, at *tokensv1alpha1.ApiToken, mutate func(*tokensv1alpha1.ApiToken), opts ...client.UpdateOption) error {
	t.Helper()
	return retryOnConflict(func() error {
		current := get(t, at)
		mutate(current)
		return c.Update(t.Context(), current, opts...)
	})
}

// tryStatusUpdate is tryUpdate for the status subresource, as a server-side dry run.
func tryStatusUpdate(t *testing.T, at *tokensv1alpha1.ApiToken, mutate func(*tokensv1alpha1.ApiTokenStatus)) error {
	t.Helper()
	return retryOnConflict(func() error {
		current := get(t, at)
		mutate(&current.Status)
		return k8s.Status().Update(t.Context(), current, client.DryRunAll)
	})
}

// retryOnConflict writes again while the write conflicts (the operator wrote
// the object meanwhile), and returns the last write's error.
func retryOnConflict(write func() error) error {
	var err error
	_ = framework.Poll(wait, func() error {
		if err = write(); apierrors.IsConflict(err) {
			return err
		}
		return nil
	})
	return err
}

// expectRefusedBy fails unless err is apitoken-policy's refusal with the status
// reason and the message.
func expectRefusedBy(t *testing.T, err error, reason metav1.StatusReason, message string) {
	t.Helper()
	if err == nil {
		t.Fatalf("admitted; want a refusal %q", message)
	}
	if got := apierrors.ReasonForError(err); got != reason {
		t.Fatalf("refused with reason %s (%v); want %s", got, err, reason)
	}
	g := NewWithT(t)
	g.Expect(err.Error()).To(ContainSubstring("ValidatingAdmissionPolicy 'apitoken-policy'"))
	g.Expect(err.Error()).To(HaveSuffix(message))
}

// A token made when its TokenBackend allowed it, whose policy was tightened
// since: an update that only disables it, only narrows its scopes, or both, or
// only touches its metadata is admitted; anything else is checked in full, and
// refused with the same messages as before.
func TestAdmissionAdmitsWhatOnlyDisablesOrNarrows(t *testing.T) {
	g := NewWithT(t)
	installAdmissionPolicy(t)
	tb := policyBackend(t, "tenant-narrow", nil)
	ns := newNamespace(t, nil)
	at := onBackend(newApiToken(ns, "wide"), tb.Name, "reports:read", "reports:write", "accounts:write")
	at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyDisable
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())

	patch := client.MergeFrom(tb.DeepCopy())
	tb.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{
		AllowedScopes:           []string{"reports:read"},
		AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete},
	}
	g.Expect(k8s.Patch(t.Context(), tb, patch)).To(Succeed())
	if _, err := framework.WaitUntilRefused(t.Context(), k8s, onBackend(newApiToken(ns, "probe"), tb.Name, "reports:write")); err != nil {
		t.Fatalf("the tightened policy is never enforced: %v", err)
	}

	admitted := map[string]func(*tokensv1alpha1.ApiToken){
		"only disables":                func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = true },
		"only narrows, still too wide": func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:write", "accounts:write"} },
		"narrows and disables": func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes, at.Spec.Disabled = []string{"accounts:write"}, true
		},
		"drops every scope": func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = nil },
		"reorders the scopes": func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes = []string{"accounts:write", "reports:write", "reports:read"}
		},
		"only annotates": func(at *tokensv1alpha1.ApiToken) {
			at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "incident-7"}
		},
		"only labels": func(at *tokensv1alpha1.ApiToken) { at.Labels = map[string]string{"team": "analytics"} },
	}
	for name, mutate := range admitted {
		t.Run("admitted: "+name, func(t *testing.T) {
			if err := tryUpdate(t, k8s, at, mutate, client.DryRunAll); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}

	const (
		tooWide    = "scopes [reports:write, accounts:write] are not allowed by TokenBackend tenant-narrow"
		noDisable  = "deletionPolicy Disable is not allowed by TokenBackend tenant-narrow"
		narrowWide = "scopes [accounts:write] are not allowed by TokenBackend tenant-narrow"
	)
	refused := map[string]struct {
		mutate func(*tokensv1alpha1.ApiToken)
		want   string
	}{
		"widens the scopes": {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = append(at.Spec.Scopes, "deals:write") },
			"scopes [reports:write, accounts:write, deals:write] are not allowed by TokenBackend tenant-narrow"},
		"replaces a scope": {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "deals:read"} },
			"scopes [deals:read] are not allowed by TokenBackend tenant-narrow"},
		"narrows and edits the description": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes, at.Spec.Description = []string{"reports:read", "accounts:write"}, "edited"
		}, narrowWide},
		"disables and changes the contact": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Disabled, at.Spec.PrimaryContact = true, "admin@example.com"
		}, tooWide},
		"disables and adds a developer": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Disabled, at.Spec.DeveloperEmails = true, append(at.Spec.DeveloperEmails, "new@example.com")
		}, tooWide},
		"narrows to what is allowed and keeps a deletion policy that is not": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes, at.Spec.DisplayName = []string{"reports:read"}, "renamed"
		}, noDisable},
		"disables and adds a restart target": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Disabled = true
			at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{{Kind: tokensv1alpha1.RestartTargetDeployment, Name: "consumer"}}
		}, tooWide},
	}
	for name, tc := range refused {
		t.Run("refused: "+name, func(t *testing.T) {
			expectRefusedBy(t, tryUpdate(t, k8s, at, tc.mutate, client.DryRunAll), metav1.StatusReasonInvalid, tc.want)
		})
	}

	// Stored, one after the other: narrowed, then disabled, then reset; turning it
	// back on is a widening, checked in full.
	t.Run("stored in turn, and enabling again is checked", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "accounts:write"} })).To(Succeed())
		g.Expect(tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = true })).To(Succeed())
		g.Expect(tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) {
			at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "incident-8"}
		})).To(Succeed())
		stored := get(t, at)
		g.Expect(stored.Spec.Scopes).To(Equal([]string{"reports:read", "accounts:write"}))
		g.Expect(stored.Spec.Disabled).To(BeTrue())
		expectRefusedBy(t, tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = false }), metav1.StatusReasonInvalid, narrowWide)
		g.Expect(get(t, at).Spec.Disabled).To(BeTrue(), "the refused enable was stored")
	})
}

// The policy stays within its CEL cost budget at the largest sizes the CRDs
// accept (256 scopes, 16 restart targets, 128 allowed scope patterns), on
// CREATE and on UPDATE: a policy out of budget would fail open (failurePolicy
// Ignore) and admit the one scope that its TokenBackend does not allow.
func TestAdmissionCostAtTheLargestSizes(t *testing.T) {
	g := NewWithT(t)
	installAdmissionPolicy(t)
	patterns := make([]string, 128)
	for i := range patterns {
		patterns[i] = fmt.Sprintf("c%d:*", i)
	}
	tb := newBackend("tenant-largest", nil)
	tb.Spec.URL = "http://127.0.0.1:1" // no catalog: only the policy applies
	tb.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: patterns}
	g.Expect(k8s.Create(t.Context(), tb)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), tb) })
	ns := newNamespace(t, nil)
	if _, err := framework.WaitUntilRefused(t.Context(), k8s, onBackend(newApiToken(ns, "probe"), tb.Name, "zebras:read")); err != nil {
		t.Fatal(err)
	}

	scopes := make([]string, 0, 256)
	for i := range 128 {
		scopes = append(scopes, fmt.Sprintf("c%d:read", i), fmt.Sprintf("c%d:write", i))
	}
	targets := make([]tokensv1alpha1.RestartTarget, 16)
	for i := range targets {
		targets[i] = tokensv1alpha1.RestartTarget{Kind: tokensv1alpha1.RestartTargetDeployment, Name: fmt.Sprintf("w%d", i)}
	}
	withLastScope := func(scope string) []string { return append(append([]string{}, scopes[:255]...), scope) }
	const want = "scopes [c200:read] are not allowed by TokenBackend tenant-largest"

	t.Run("create", func(t *testing.T) {
		at := onBackend(newApiToken(ns, "largest-create"), tb.Name, withLastScope("c200:read")...)
		at.Spec.Secret.RestartTargets = targets
		expectRefusedBy(t, k8s.Create(t.Context(), at, client.DryRunAll), metav1.StatusReasonInvalid, want)
	})

	at := onBackend(newApiToken(ns, "largest"), tb.Name, scopes...)
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	t.Run("update: every scope compared with every old one", func(t *testing.T) {
		expectRefusedBy(t, tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = withLastScope("c200:read") }, client.DryRunAll),
			metav1.StatusReasonInvalid, want)
		if err := tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = scopes[:255] }, client.DryRunAll); err != nil {
			t.Errorf("narrowing refused: %v", err)
		}
	})
	t.Run("update: sixteen new restart targets", func(t *testing.T) {
		expectRefusedBy(t, tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes, at.Spec.Secret.RestartTargets = withLastScope("c200:read"), targets
		}, client.DryRunAll), metav1.StatusReasonInvalid, want)
	})
	t.Run("a user: the sixteenth restart target, after every check of the scopes", func(t *testing.T) {
		patchable := make([]string, 15)
		for i := range patchable {
			patchable[i] = targets[i].Name
		}
		tenant := restartTenant(t, ns, "largest-tenant", patchable...)
		fresh := withTargets(onBackend(newApiToken(ns, "largest-user"), tb.Name, scopes...), targets...)
		expectRefusedBy(t, tenant.Create(t.Context(), fresh, client.DryRunAll), metav1.StatusReasonForbidden, "restartTargets: user may not patch Deployment w15")
		expectRefusedBy(t, tryUpdate(t, tenant, at, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.RestartTargets = targets
		}, client.DryRunAll), metav1.StatusReasonForbidden, "restartTargets: user may not patch Deployment w15")
	})
}

// restartTenant is a user of its own namespace who may write ApiTokens, get
// every Deployment, and patch only the Deployments named; it returns a client
// acting as that user once RBAC lets it create ApiTokens.
func restartTenant(t *testing.T, ns, user string, patchable ...string) client.Client {
	t.Helper()
	g := NewWithT(t)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{tokensv1alpha1.GroupVersion.Group}, Resources: []string{"apitokens"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"patch"}, ResourceNames: patchable},
		},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	g.Expect(k8s.Create(t.Context(), role)).To(Succeed())
	g.Expect(k8s.Create(t.Context(), binding)).To(Succeed())
	authn, err := controlPlane.Env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(authn.Config(), client.Options{Scheme: testScope})
	if err != nil {
		t.Fatal(err)
	}
	probe := onBackend(newApiToken(ns, "rbac-probe"), noBackend, "reports:read")
	g.Eventually(func() error { return c.Create(t.Context(), probe.DeepCopy(), client.DryRunAll) }, wait, tick).Should(Succeed(), "RBAC never let %s create an ApiToken", user)
	return c
}

func withTargets(at *tokensv1alpha1.ApiToken, targets ...tokensv1alpha1.RestartTarget) *tokensv1alpha1.ApiToken {
	at.Spec.Secret.RestartTargets = targets
	return at
}

func deployment(name string) tokensv1alpha1.RestartTarget {
	return tokensv1alpha1.RestartTarget{Kind: tokensv1alpha1.RestartTargetDeployment, Name: name}
}

// A user may name as restart targets only workloads it may patch itself (CEL
// authorizer). On UPDATE only the targets the update adds are checked.
func TestAdmissionRefusesRestartTargetsTheUserMayNotPatch(t *testing.T) {
	installAdmissionPolicy(t)
	ns := newNamespace(t, nil)
	allowed := []string{"reporting"}
	for i := range 15 {
		allowed = append(allowed, fmt.Sprintf("w%d", i))
	}
	tenant := restartTenant(t, ns, "restart-tenant", allowed...)
	token := func(name string, targets ...tokensv1alpha1.RestartTarget) *tokensv1alpha1.ApiToken {
		return withTargets(onBackend(newApiToken(ns, name), noBackend, "reports:read"), targets...)
	}
	fifteen := make([]tokensv1alpha1.RestartTarget, 0, 16)
	for _, name := range allowed[1:] {
		fifteen = append(fifteen, deployment(name))
	}

	refused := map[string]struct {
		at   *tokensv1alpha1.ApiToken
		want string
	}{
		"a Deployment it may only get":                  {token("refused", deployment("payments")), "restartTargets: user may not patch Deployment payments"},
		"a StatefulSet named as a patchable Deployment": {token("refused", tokensv1alpha1.RestartTarget{Kind: tokensv1alpha1.RestartTargetStatefulSet, Name: "reporting"}), "restartTargets: user may not patch StatefulSet reporting"},
		"a DaemonSet":                      {token("refused", deployment("reporting"), tokensv1alpha1.RestartTarget{Kind: tokensv1alpha1.RestartTargetDaemonSet, Name: "agent"}), "restartTargets: user may not patch DaemonSet agent"},
		"the sixteenth of sixteen targets": {token("refused", append(fifteen, deployment("payments"))...), "restartTargets: user may not patch Deployment payments"},
	}
	for name, tc := range refused {
		t.Run("refused: "+name, func(t *testing.T) {
			expectRefusedBy(t, tenant.Create(t.Context(), tc.at, client.DryRunAll), metav1.StatusReasonForbidden, tc.want)
		})
	}
	t.Run("admitted: sixteen targets it may patch", func(t *testing.T) {
		if err := tenant.Create(t.Context(), token("sixteen", append(fifteen, deployment("reporting"))...), client.DryRunAll); err != nil {
			t.Fatalf("refused: %v", err)
		}
	})
	t.Run("the cluster admin may name any workload", func(t *testing.T) {
		if err := k8s.Create(t.Context(), token("admin", deployment("payments")), client.DryRunAll); err != nil {
			t.Fatalf("refused: %v", err)
		}
	})

	t.Run("update: only added targets are checked", func(t *testing.T) {
		g := NewWithT(t)
		own := token("own", deployment("reporting"))
		g.Expect(tenant.Create(t.Context(), own)).To(Succeed())
		expectRefusedBy(t, tryUpdate(t, tenant, own, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.RestartTargets = append(at.Spec.Secret.RestartTargets, deployment("payments"))
		}), metav1.StatusReasonForbidden, "restartTargets: user may not patch Deployment payments")

		// An ApiToken the admin made naming payments: the tenant's unrelated
		// changes, and targets it may patch, are admitted; payments is not re-checked.
		shared := token("shared", deployment("payments"))
		g.Expect(k8s.Create(t.Context(), shared)).To(Succeed())
		g.Expect(tryUpdate(t, tenant, shared, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "edited by the tenant" })).To(Succeed())
		g.Expect(tryUpdate(t, tenant, shared, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.RestartTargets = append(at.Spec.Secret.RestartTargets, deployment("reporting"))
		})).To(Succeed())
		expectRefusedBy(t, tryUpdate(t, tenant, shared, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.RestartTargets = append(at.Spec.Secret.RestartTargets, deployment("billing"))
		}), metav1.StatusReasonForbidden, "restartTargets: user may not patch Deployment billing")
		// Dropping payments and adding it back is adding it.
		g.Expect(tryUpdate(t, tenant, shared, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{deployment("reporting")}
		})).To(Succeed())
		expectRefusedBy(t, tryUpdate(t, tenant, shared, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.RestartTargets = append(at.Spec.Secret.RestartTargets, deployment("payments"))
		}), metav1.StatusReasonForbidden, "restartTargets: user may not patch Deployment payments")
	})
}

// spec.adopt decides which token an ApiToken gets until it owns one: it cannot be
// removed or changed before status.accountSid is set, and can be removed after.
func TestAdoptIsKeptUntilTheApiTokenOwnsAToken(t *testing.T) {
	g := NewWithT(t)
	tb := adoptingBackend(t, "adopt-guard")
	waiting, _ := handMade(t, "guarded")
	owned, _ := handMade(t, "guarded-owned")
	const want = "spec.adopt cannot be removed or changed until the ApiToken owns a token (status.accountSid)"

	// Not in a namespace the TokenBackend lets adopt: it never owns a token.
	ns := newNamespace(t, nil)
	at := adopting(ns, "waiting", tb.Name, waiting.SID)
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	stalled := waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonAdoptionNotAllowed)
	g.Expect(stalled.Status.AccountSID).To(BeEmpty())
	for name, mutate := range map[string]func(*tokensv1alpha1.ApiToken){
		"removed": func(at *tokensv1alpha1.ApiToken) { at.Spec.Adopt = nil },
		"changed": func(at *tokensv1alpha1.ApiToken) { at.Spec.Adopt.AccountSID = owned.SID },
	} {
		t.Run(name+" before it owns a token", func(t *testing.T) {
			err := tryUpdate(t, k8s, at, mutate)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("err %v, want Invalid", err)
			}
			NewWithT(t).Expect(err.Error()).To(ContainSubstring(want))
		})
	}
	g.Expect(tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "still waiting" })).To(Succeed())
	g.Expect(get(t, at).Spec.Adopt).To(Equal(&tokensv1alpha1.Adoption{AccountSID: waiting.SID}))

	t.Run("removed once it owns a token", func(t *testing.T) {
		g := NewWithT(t)
		at := adopting(newNamespace(t, map[string]string{"migration": "true"}), "owner", tb.Name, owned.SID)
		g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
		g.Expect(waitReady(t, at).Status.AccountSID).To(Equal(owned.SID))
		g.Expect(tryUpdate(t, k8s, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Adopt = nil })).To(Succeed())
		g.Expect(get(t, at).Spec.Adopt).To(BeNil())
	})
}

// sidPattern is the pattern of the CRD's SIDs (api/v1alpha1).
var sidPattern = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_]*$`)

// Every SID the CRD holds (spec.adopt, status.accountSid, retiring tokens,
// history) is letters, digits, '-' and '_', starting with a letter or digit:
// nothing a path or a URL could be built from other than the one segment.
func TestSIDsHaveAStrictPattern(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	tok, _ := handMade(t, "sid-pattern")
	g.Expect(tok.SID).To(MatchRegexp(sidPattern.String()), "tokenservice issues a SID the CRD refuses")

	bad := []string{"TK.1", "TK/1", "../TK1", "TK 1", "-TK1", "_TK1", "TK1:x", "TK%2F1", "TK1?x=y", "TK1\n"}
	good := []string{tok.SID, "tk-1_2", "3f2a1c9e-7b4d-4e8a-9c1f-2a3b4c5d6e7f", "3f2a1c9e-7b4d-4e8a-9c1f-2a3b4c5d6e7f-2", "0"}
	for _, sid := range bad {
		g.Expect(sidPattern.MatchString(sid)).To(BeFalse(), "the test's pattern admits %q", sid)
	}

	at := onBackend(newApiToken(ns, "sids"), noBackend, "reports:read")
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	writes := map[string]struct {
		field string
		write func(sid string) error
	}{
		"spec.adopt.accountSid": {"spec.adopt.accountSid", func(sid string) error {
			adopter := newApiToken(ns, "adopter")
			adopter.Spec.Adopt = &tokensv1alpha1.Adoption{AccountSID: sid}
			return k8s.Create(t.Context(), adopter, client.DryRunAll)
		}},
		"status.accountSid": {"status.accountSid", func(sid string) error {
			return tryStatusUpdate(t, at, func(s *tokensv1alpha1.ApiTokenStatus) { s.AccountSID = sid })
		}},
		"status.retiringTokens": {"status.retiringTokens[0].accountSid", func(sid string) error {
			return tryStatusUpdate(t, at, func(s *tokensv1alpha1.ApiTokenStatus) {
				s.RetiringTokens = []tokensv1alpha1.RetiringToken{{AccountSID: sid, DeleteAfter: now}}
			})
		}},
		"status.history": {"status.history[0].accountSid", func(sid string) error {
			return tryStatusUpdate(t, at, func(s *tokensv1alpha1.ApiTokenStatus) {
				s.History = []tokensv1alpha1.CredentialChange{{Type: tokensv1alpha1.CredentialsCreated, Time: now, AccountSID: sid, Generation: 1}}
			})
		}},
	}
	for name, w := range writes {
		t.Run(name, func(t *testing.T) {
			for _, sid := range bad {
				err := w.write(sid)
				if !apierrors.IsInvalid(err) {
					t.Errorf("%q: err %v, want Invalid", sid, err)
					continue
				}
				if want := w.field + ": Invalid value"; !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(err.Error()) {
					t.Errorf("%q: %v does not name %s", sid, err, want)
				}
			}
			for _, sid := range good {
				if err := w.write(sid); err != nil {
					t.Errorf("%q refused: %v", sid, err)
				}
			}
		})
	}
}
