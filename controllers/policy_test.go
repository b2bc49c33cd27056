package controllers

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// demoCatalog is tokenservice's built-in catalog, cut down.
func demoCatalog() *tokensv1alpha1.TokenBackendCatalog {
	return &tokensv1alpha1.TokenBackendCatalog{
		APIVersions: []int32{12, 13, 14, 15, 16},
		Scopes:      []string{"accounts:read", "accounts:write", "actions:read", "actions:write", "reports:read", "reports:write"},
		Contacts:    []string{"admin@example.com", "ops@example.com"},
	}
}

// TestPolicyViolations: what the shared table (framework.PolicyCases, run
// through both the admission policy and checkPolicy in policy_cases_test.go)
// does not show: the list of every violation at once, in a stable order, and
// lists that are not checked.
func TestPolicyViolations(t *testing.T) {
	spec := func(mutate func(*tokensv1alpha1.ApiTokenSpec)) *tokensv1alpha1.ApiTokenSpec {
		s := &tokensv1alpha1.ApiTokenSpec{PrimaryContact: "ops@example.com", Scopes: []string{"reports:read", "actions:read"}, DeletionPolicy: tokensv1alpha1.DeletionPolicyDelete}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	tenant := &tokensv1alpha1.TokenBackendPolicy{
		AllowedScopes:           []string{"reports:*", "*:read", "actions:write"},
		AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete, tokensv1alpha1.DeletionPolicyDisable},
	}
	tests := map[string]struct {
		spec    *tokensv1alpha1.ApiTokenSpec
		policy  *tokensv1alpha1.TokenBackendPolicy
		catalog *tokensv1alpha1.TokenBackendCatalog
		want    []string
	}{
		"no policy, no catalog: everything goes": {
			spec: spec(func(s *tokensv1alpha1.ApiTokenSpec) {
				s.Scopes = []string{"nosuch:admin"}
				s.PrimaryContact = "stranger@example.com"
				s.APIVersion = ptr.To[int32](99)
				s.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan
			}),
		},
		"no scopes at all": {spec: spec(func(s *tokensv1alpha1.ApiTokenSpec) { s.Scopes = nil }), policy: tenant, catalog: demoCatalog()},
		"a pattern matches whole segments only": {
			spec:   spec(func(s *tokensv1alpha1.ApiTokenSpec) { s.Scopes = []string{"reports-v2:write", "accounts:reader"} }),
			policy: tenant,
			want:   []string{"scopes [reports-v2:write, accounts:reader] are not allowed by TokenBackend tenant-a"},
		},
		"a scope neither in the catalog nor allowed is named twice": {
			spec:    spec(func(s *tokensv1alpha1.ApiTokenSpec) { s.Scopes = []string{"zebras:write"} }),
			policy:  tenant,
			catalog: demoCatalog(),
			want: []string{
				"scopes [zebras:write] are not in the catalog of TokenBackend tenant-a",
				"scopes [zebras:write] are not allowed by TokenBackend tenant-a",
			},
		},
		"apiVersion omitted: the backend's latest": {spec: spec(nil), catalog: demoCatalog()},
		"deletion policy empty means the default, Delete": {
			spec:   spec(func(s *tokensv1alpha1.ApiTokenSpec) { s.DeletionPolicy = "" }),
			policy: &tokensv1alpha1.TokenBackendPolicy{AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyOrphan}},
			want:   []string{"deletionPolicy Delete is not allowed by TokenBackend tenant-a"},
		},
		"lists omitted from policy and catalog are not checked": {
			spec: spec(func(s *tokensv1alpha1.ApiTokenSpec) {
				s.Scopes = []string{"zebras:write"}
				s.PrimaryContact = "stranger@example.com"
				s.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan
			}),
			policy:  &tokensv1alpha1.TokenBackendPolicy{},
			catalog: &tokensv1alpha1.TokenBackendCatalog{APIVersions: []int32{16}},
		},
		"everything wrong at once, in a stable order": {
			spec: spec(func(s *tokensv1alpha1.ApiTokenSpec) {
				s.Scopes = []string{"accounts:write"}
				s.PrimaryContact = "stranger@example.com"
				s.APIVersion = ptr.To[int32](99)
				s.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan
			}),
			policy: tenant, catalog: demoCatalog(),
			want: []string{
				"scopes [accounts:write] are not allowed by TokenBackend tenant-a",
				"primaryContact stranger@example.com is not a contact in the catalog of TokenBackend tenant-a",
				"apiVersion 99 is not in the catalog of TokenBackend tenant-a",
				"deletionPolicy Orphan is not allowed by TokenBackend tenant-a",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := tc.spec.DeepCopy()
			got := policyViolations(tc.spec, "tenant-a", tc.policy, tc.catalog)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("policyViolations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tc.spec); diff != "" {
				t.Errorf("policyViolations changed the spec:\n%s", diff)
			}
		})
	}
}

func TestCatalogStatus(t *testing.T) {
	scopes := func(names ...string) []backend.Scope {
		out := make([]backend.Scope, len(names))
		for i, n := range names {
			out[i] = backend.Scope{Name: n}
		}
		return out
	}
	many := make([]backend.Scope, maxCatalogScopes+1)
	for i := range many {
		many[i] = backend.Scope{Name: fmt.Sprintf("c%d:read", i)}
	}
	tests := map[string]struct {
		in   backend.Catalog
		want *tokensv1alpha1.TokenBackendCatalog
	}{
		"sorted, without duplicates, whatever the backend's order": {
			in: backend.Catalog{
				APIVersions: []int{16, 12, 14, 12},
				Scopes:      scopes("reports:read", "accounts:write", "reports:read"),
				Contacts:    []backend.Contact{{Email: "ops@example.com"}, {Email: "admin@example.com"}},
			},
			want: &tokensv1alpha1.TokenBackendCatalog{
				APIVersions: []int32{12, 14, 16}, Scopes: []string{"accounts:write", "reports:read"}, Contacts: []string{"admin@example.com", "ops@example.com"},
			},
		},
		"an empty catalog publishes nothing": {in: backend.Catalog{}, want: nil},
		"a list over its limit is left out, not truncated": {
			in:   backend.Catalog{APIVersions: []int{16}, Scopes: many},
			want: &tokensv1alpha1.TokenBackendCatalog{APIVersions: []int32{16}},
		},
		"items no ApiToken could name are left out": {
			in:   backend.Catalog{APIVersions: []int{0, 16, 200000}, Contacts: []backend.Contact{{Email: string(make([]byte, 255))}}},
			want: &tokensv1alpha1.TokenBackendCatalog{APIVersions: []int32{16}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, catalogStatus(t.Context(), &tc.in)); diff != "" {
				t.Errorf("catalogStatus (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCatalogChangedPredicate(t *testing.T) {
	backendWith := func(c *tokensv1alpha1.TokenBackendCatalog) *tokensv1alpha1.TokenBackend {
		return &tokensv1alpha1.TokenBackend{Status: tokensv1alpha1.TokenBackendStatus{Catalog: c}}
	}
	wider := demoCatalog()
	wider.Scopes = append(wider.Scopes, "zebras:read")
	tests := map[string]struct {
		old, new *tokensv1alpha1.TokenBackendCatalog
		want     bool
	}{
		"unchanged":      {demoCatalog(), demoCatalog(), false},
		"none yet":       {nil, nil, false},
		"first catalog":  {nil, demoCatalog(), true},
		"a scope added":  {demoCatalog(), wider, true},
		"catalog gone":   {demoCatalog(), nil, true},
		"contact change": {demoCatalog(), &tokensv1alpha1.TokenBackendCatalog{APIVersions: demoCatalog().APIVersions, Scopes: demoCatalog().Scopes}, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := catalogChangedPredicate().Update(event.UpdateEvent{ObjectOld: backendWith(tc.old), ObjectNew: backendWith(tc.new)})
			if got != tc.want {
				t.Errorf("catalogChangedPredicate = %v, want %v", got, tc.want)
			}
		})
	}
}
