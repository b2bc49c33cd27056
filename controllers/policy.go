package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The TokenBackend's policy and catalog, enforced at reconcile. The
// ValidatingAdmissionPolicy in config/admission enforces the same rules, with the
// same messages, when an ApiToken is admitted; this check is the one that holds
// when admission could not (the policy tightened, the catalog changed, or the
// admission policy is not installed).

// Catalog lists longer than these are not published (and then not checked): the
// limits of status.catalog in the CRD, which bound the admission policy's cost.
const (
	maxCatalogAPIVersions = 64
	maxCatalogScopes      = 512
	maxCatalogContacts    = 1024
)

// policyViolations lists what in the spec the TokenBackend named backendName does
// not allow: scopes, primary contact or API version missing from its catalog,
// scopes or a deletion policy its policy does not allow. A nil policy or catalog,
// or a list omitted from them, allows everything that it would have limited.
// Each entry names the offending values; the texts are those of the admission
// policy, so that a refusal and a stall read the same.
func policyViolations(spec *tokensv1alpha1.ApiTokenSpec, backendName string, policy *tokensv1alpha1.TokenBackendPolicy, catalog *tokensv1alpha1.TokenBackendCatalog) []string {
	var out []string
	if catalog != nil && len(catalog.Scopes) > 0 {
		unknown := slices.DeleteFunc(slices.Clone(spec.Scopes), func(s string) bool { return slices.Contains(catalog.Scopes, s) })
		if len(unknown) > 0 {
			out = append(out, fmt.Sprintf("scopes [%s] are not in the catalog of TokenBackend %s", strings.Join(unknown, ", "), backendName))
		}
	}
	if policy != nil && len(policy.AllowedScopes) > 0 {
		denied := slices.DeleteFunc(slices.Clone(spec.Scopes), func(s string) bool { return scopeAllowed(s, policy.AllowedScopes) })
		if len(denied) > 0 {
			out = append(out, fmt.Sprintf("scopes [%s] are not allowed by TokenBackend %s", strings.Join(denied, ", "), backendName))
		}
	}
	if catalog != nil && len(catalog.Contacts) > 0 && !slices.Contains(catalog.Contacts, spec.PrimaryContact) {
		out = append(out, fmt.Sprintf("primaryContact %s is not a contact in the catalog of TokenBackend %s", spec.PrimaryContact, backendName))
	}
	if catalog != nil && len(catalog.APIVersions) > 0 && spec.APIVersion != nil && !slices.Contains(catalog.APIVersions, *spec.APIVersion) {
		out = append(out, fmt.Sprintf("apiVersion %d is not in the catalog of TokenBackend %s", *spec.APIVersion, backendName))
	}
	deletion := spec.DeletionPolicy
	if deletion == "" {
		deletion = tokensv1alpha1.DeletionPolicyDelete // the CRD's default
	}
	if policy != nil && len(policy.AllowedDeletionPolicies) > 0 && !slices.Contains(policy.AllowedDeletionPolicies, deletion) {
		out = append(out, fmt.Sprintf("deletionPolicy %s is not allowed by TokenBackend %s", deletion, backendName))
	}
	return out
}

// scopeAllowed reports whether a scope matches one of the patterns: the scope
// itself, <category>:* or *:<permission>.
func scopeAllowed(scope string, patterns []string) bool {
	category, permission, _ := strings.Cut(scope, ":")
	for _, p := range patterns {
		if p == scope || p == category+":*" || p == "*:"+permission {
			return true
		}
	}
	return false
}

// deletionAllowed reports whether a TokenBackend's policy allows a deletion
// policy: a nil policy or an empty list allows all three.
func deletionAllowed(policy *tokensv1alpha1.TokenBackendPolicy, p tokensv1alpha1.DeletionPolicy) bool {
	return policy == nil || len(policy.AllowedDeletionPolicies) == 0 || slices.Contains(policy.AllowedDeletionPolicies, p)
}

// effectiveDeletionPolicy is the deletion policy carried out: the requested one
// (Delete when empty) where the TokenBackend allows it, otherwise the first it
// allows of Delete, Disable, Orphan. A paused ApiToken asks for Orphan; a policy
// tightened after the ApiToken was admitted is honoured: nothing a tenant writes
// widens what deletion leaves behind.
func effectiveDeletionPolicy(requested tokensv1alpha1.DeletionPolicy, policy *tokensv1alpha1.TokenBackendPolicy) tokensv1alpha1.DeletionPolicy {
	if requested == "" {
		requested = tokensv1alpha1.DeletionPolicyDelete
	}
	if deletionAllowed(policy, requested) {
		return requested
	}
	for _, p := range []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete, tokensv1alpha1.DeletionPolicyDisable, tokensv1alpha1.DeletionPolicyOrphan} {
		if deletionAllowed(policy, p) {
			return p
		}
	}
	return requested
}

// unsupportedBy lists what the spec asks of a backend type that its
// capabilities cannot do: disabling a token without Disable, adopting one
// without Claim.
func unsupportedBy(spec *tokensv1alpha1.ApiTokenSpec, caps backend.Capabilities, backendName string) []string {
	var out []string
	if spec.Disabled && !caps.Disable {
		out = append(out, fmt.Sprintf("TokenBackend %s cannot disable a token: delete the ApiToken instead", backendName))
	}
	if spec.Adopt != nil && !caps.Claim {
		out = append(out, fmt.Sprintf("TokenBackend %s cannot mark a token as adopted: create a new ApiToken instead", backendName))
	}
	return out
}

// checkCapabilities stalls an ApiToken that asks its backend type for
// something it cannot do.
func checkCapabilities(p *pass) error {
	if p.be == nil {
		return nil
	}
	if unsupported := unsupportedBy(&p.at.Spec, p.caps, p.tb.Name); len(unsupported) > 0 {
		return stalled(tokensv1alpha1.ReasonBackendRejected, "%s", strings.Join(unsupported, "; "))
	}
	return nil
}

// checkPolicy stalls an ApiToken whose spec its TokenBackend does not allow,
// before anything is asked of the backend: a new token is not created, and a live
// one that a tightened policy no longer allows is left as it is (never narrowed
// silently) until the spec or the policy changes. Incident response (reset,
// rotation, disable, narrower scopes) still goes on: respondWhileBlocked.
func checkPolicy(at *tokensv1alpha1.ApiToken, tb *tokensv1alpha1.TokenBackend) error {
	if violations := policyViolations(&at.Spec, tb.Name, tb.Spec.Policy, tb.Status.Catalog); len(violations) > 0 {
		return stalled(tokensv1alpha1.ReasonPolicyViolation, "%s", strings.Join(violations, "; "))
	}
	return nil
}

// catalogStatus is the catalog as TokenBackend.status.catalog publishes it:
// sorted and without duplicates, so that the same catalog always compares equal
// (steady state writes nothing). A list over its limit, or an item too long for
// any ApiToken to name, is left out rather than failing the status write.
func catalogStatus(ctx context.Context, c *backend.Catalog) *tokensv1alpha1.TokenBackendCatalog {
	out := &tokensv1alpha1.TokenBackendCatalog{}
	for _, v := range c.APIVersions {
		if v > 0 && v <= 100000 { // the range of ApiToken.spec.apiVersion
			out.APIVersions = append(out.APIVersions, int32(v))
		}
	}
	for _, s := range c.Scopes {
		if len(s.Name) <= 128 {
			out.Scopes = append(out.Scopes, s.Name)
		}
	}
	for _, p := range c.Contacts {
		if len(p.Email) <= 254 {
			out.Contacts = append(out.Contacts, p.Email)
		}
	}
	out.APIVersions = publishable(ctx, "apiVersions", sortedSet(out.APIVersions), maxCatalogAPIVersions)
	out.Scopes = publishable(ctx, "scopes", sortedSet(out.Scopes), maxCatalogScopes)
	out.Contacts = publishable(ctx, "contacts", sortedSet(out.Contacts), maxCatalogContacts)
	if out.APIVersions == nil && out.Scopes == nil && out.Contacts == nil {
		return nil
	}
	return out
}

func sortedSet[T int32 | string](list []T) []T {
	slices.Sort(list)
	return slices.Compact(list)
}

// publishable drops a list longer than limit: an omitted list is not checked,
// where a truncated one would refuse what the backend offers.
func publishable[T any](ctx context.Context, field string, list []T, limit int) []T {
	if len(list) > limit {
		logf.FromContext(ctx).Info("catalog list too long to publish; it is not checked at admission or reconcile",
			"field", field, "items", len(list), "limit", limit)
		return nil
	}
	if len(list) == 0 {
		return nil
	}
	return list
}

// catalogChangedPredicate passes TokenBackend updates that changed the published
// catalog: the ApiTokens using it are checked against the new one.
func catalogChangedPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		oldTB, okOld := e.ObjectOld.(*tokensv1alpha1.TokenBackend)
		newTB, okNew := e.ObjectNew.(*tokensv1alpha1.TokenBackend)
		return okOld && okNew && !equalCatalogs(oldTB.Status.Catalog, newTB.Status.Catalog)
	}}
}

func equalCatalogs(a, b *tokensv1alpha1.TokenBackendCatalog) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.APIVersions, b.APIVersions) && slices.Equal(a.Scopes, b.Scopes) && slices.Equal(a.Contacts, b.Contacts)
}
