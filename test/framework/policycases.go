package framework

// This file: the one table of what a TokenBackend's policy and catalog refuse.
// The admission policy of config/admission and the operator's own check at
// reconcile (controllers/policy.go) must refuse the same ApiTokens with the
// same message; the reliability suite runs the table against the admission
// policy (envtest), the controllers package against the Go rules.

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// PolicyBackend is a TokenBackend as far as the policy rules read it: its
// name, its spec.policy and the catalog it has published (status.catalog).
type PolicyBackend struct {
	Name    string
	Policy  *tokensv1alpha1.TokenBackendPolicy
	Catalog *tokensv1alpha1.TokenBackendCatalog
}

// TokenBackend is the backend as an object, status included. Its URL answers
// nothing: where no operator runs, the catalog is what the test writes.
func (b PolicyBackend) TokenBackend() *tokensv1alpha1.TokenBackend {
	tb := TokenBackendFor(b.Name, "http://127.0.0.1:1", time.Minute)
	tb.Spec.Policy = b.Policy.DeepCopy()
	tb.Status.Catalog = b.Catalog.DeepCopy()
	return tb
}

// PolicyCase is one ApiToken spec on one TokenBackend, and the one refusal
// both rule sets give it.
type PolicyCase struct {
	Name    string
	Backend PolicyBackend
	// Spec changes a spec that the backend allows (policyCaseSpec).
	Spec func(*tokensv1alpha1.ApiTokenSpec)
	// Refusal is the whole message of the one rule the spec breaks; empty
	// when the spec is allowed.
	Refusal string
}

// ApiToken is the case's ApiToken, named name in namespace ns.
func (pc PolicyCase) ApiToken(ns, name string) *tokensv1alpha1.ApiToken {
	at := &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tokensv1alpha1.ApiTokenSpec{BackendRef: tokensv1alpha1.BackendReference{Name: pc.Backend.Name},
			PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}},
	}
	if pc.Spec != nil {
		pc.Spec(&at.Spec)
	}
	return at
}

// The backends of PolicyCases.
var (
	// policyTenant allows every reports scope and reading anything, deletion
	// by Delete or Disable, within a catalog of four categories.
	policyTenant = PolicyBackend{
		Name: "policy-tenant",
		Policy: &tokensv1alpha1.TokenBackendPolicy{
			AllowedScopes:           []string{"reports:*", "*:read"},
			AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete, tokensv1alpha1.DeletionPolicyDisable},
		},
		Catalog: &tokensv1alpha1.TokenBackendCatalog{
			APIVersions: []int32{12, 13, 14, 15, 16},
			Contacts:    []string{"admin@example.com", "ops@example.com"},
			Scopes: []string{"accounts:read", "accounts:write", "actions:read", "actions:write",
				"deals:read", "deals:write", "reports:read", "reports:write"},
		},
	}
	// policyDeleteOnly allows deletion by Delete only, and has no catalog.
	policyDeleteOnly = PolicyBackend{
		Name:   "policy-delete-only",
		Policy: &tokensv1alpha1.TokenBackendPolicy{AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete}},
	}
	// policyUncatalogued has not published a catalog yet: only its policy applies.
	policyUncatalogued = PolicyBackend{
		Name:   "policy-uncatalogued",
		Policy: &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: []string{"reports:*"}},
	}
	// policyLargest has the largest policy and catalog the CRD accepts: the
	// admission policy must stay within its CEL cost budget for them, or it
	// would fail open (failurePolicy Ignore admits).
	policyLargest = PolicyBackend{
		Name:    "policy-largest",
		Policy:  &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: numbered(128, "c%d:*")},
		Catalog: &tokensv1alpha1.TokenBackendCatalog{Scopes: append(numbered(256, "c%d:read"), numbered(256, "c%d:write")...)},
	}
)

// PolicyCases are the cases, each breaking at most one rule.
func PolicyCases() []PolicyCase {
	scopes := func(s ...string) func(*tokensv1alpha1.ApiTokenSpec) {
		return func(spec *tokensv1alpha1.ApiTokenSpec) { spec.Scopes = s }
	}
	return []PolicyCase{
		{"within the policy and the catalog", policyTenant, scopes("reports:write", "deals:read"), ""},
		{"every pattern form of the policy", policyTenant, scopes("reports:write", "accounts:read", "actions:read"), ""},
		{"scopes outside the policy, each named, in spec order", policyTenant, scopes("reports:write", "deals:write", "accounts:write"),
			"scopes [deals:write, accounts:write] are not allowed by TokenBackend policy-tenant"},
		{"a scope missing from the catalog", policyTenant, scopes("reports:read", "zebras:read"),
			"scopes [zebras:read] are not in the catalog of TokenBackend policy-tenant"},
		{"a contact missing from the catalog", policyTenant, func(s *tokensv1alpha1.ApiTokenSpec) { s.PrimaryContact = "stranger@example.com" },
			"primaryContact stranger@example.com is not a contact in the catalog of TokenBackend policy-tenant"},
		{"an apiVersion in the catalog", policyTenant, func(s *tokensv1alpha1.ApiTokenSpec) { s.APIVersion = ptr.To[int32](14) }, ""},
		{"an apiVersion missing from the catalog", policyTenant, func(s *tokensv1alpha1.ApiTokenSpec) { s.APIVersion = ptr.To[int32](17) },
			"apiVersion 17 is not in the catalog of TokenBackend policy-tenant"},
		{"deletionPolicy Disable within the policy", policyTenant, deletion(tokensv1alpha1.DeletionPolicyDisable), ""},
		{"deletionPolicy Orphan outside the policy", policyTenant, deletion(tokensv1alpha1.DeletionPolicyOrphan),
			"deletionPolicy Orphan is not allowed by TokenBackend policy-tenant"},
		{"deletionPolicy Disable outside the policy", policyDeleteOnly, deletion(tokensv1alpha1.DeletionPolicyDisable),
			"deletionPolicy Disable is not allowed by TokenBackend policy-delete-only"},
		{"no deletionPolicy: the default, Delete", policyDeleteOnly, nil, ""},
		{"no catalog yet: scopes outside the policy", policyUncatalogued, scopes("zebras:read", "deals:read", "reports:read"),
			"scopes [zebras:read, deals:read] are not allowed by TokenBackend policy-uncatalogued"},
		{"no catalog yet: any scope the policy allows", policyUncatalogued, scopes("reports:admin"), ""},
		{"the largest sizes: the one scope not allowed", policyLargest,
			scopes(append(append(numbered(128, "c%d:read"), numbered(127, "c%d:write")...), "c200:read")...),
			"scopes [c200:read] are not allowed by TokenBackend policy-largest"},
	}
}

func deletion(p tokensv1alpha1.DeletionPolicy) func(*tokensv1alpha1.ApiTokenSpec) {
	return func(s *tokensv1alpha1.ApiTokenSpec) { s.DeletionPolicy = p }
}

// numbered is n strings of the format, numbered from 0.
func numbered(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}
