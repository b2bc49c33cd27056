package e2e

import (
	"errors"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestPolicyRefusedAtKubectlApply installs config/default as users do and
// applies the two-tenant sample of the README: kubectl apply of an ApiToken that
// its TokenBackend's policy or the catalog the operator published does not
// allow prints the admission policy's message and stores nothing; within the
// policy it becomes Ready. Every rule and its message: framework.PolicyCases,
// run against the same admission policy in test/reliability.
func TestPolicyRefusedAtKubectlApply(t *testing.T) {
	e := sharedCluster(t)
	// config/default keeps the names docs/design.md gives (no name prefix).
	e.kubectl("get", "validatingadmissionpolicy/apitoken-policy", "validatingadmissionpolicybinding/apitoken-policy")
	e.applySample("", "tokens_v1alpha1_tokenbackend_tenants.yaml")
	e.waitFor("", "condition=Ready", "tokenbackend/team-analytics", "tokenbackend/team-partners")
	e.waitFor("", "jsonpath={.status.catalog.contacts[0]}=admin@example.com", "tokenbackend/team-analytics")
	e.kubectl("create", "namespace", "policy")
	e.kubectl("label", "namespace", "policy", "tenant=analytics")

	token := func(scopes string) string {
		return apiToken("reporting-etl", scopes, "  backendRef: {name: team-analytics}\n")
	}
	cases := map[string]struct{ manifest, want string }{
		"scope outside the policy": {token("[reports:read, accounts:write]"),
			"scopes [accounts:write] are not allowed by TokenBackend team-analytics"},
		"scope outside the catalog": {token("[reports:export]"),
			"scopes [reports:export] are not in the catalog of TokenBackend team-analytics"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			// The API server reads the TokenBackends it admits against through a
			// watch: wait (with server-side dry runs) until it has seen their catalogs.
			e.eventually("the admission policy refuses", framework.WaitTimeout, func() error {
				if _, err := e.c.KubectlWithInput(e.ctx, tc.manifest, "apply", "--dry-run=server", "-n", "policy", "-f", "-"); err == nil {
					return errors.New("admitted")
				}
				return nil
			})
			out, err := e.c.KubectlWithInput(e.ctx, tc.manifest, "apply", "-n", "policy", "-f", "-")
			t.Logf("kubectl apply: %v", err)
			expectRefused(t, out, err, tc.want)
			if got := e.kubectl("-n", "policy", "get", "apitokens", "-o", "name"); got != "" {
				t.Errorf("a refused ApiToken was stored: %s", got)
			}
		})
	}

	e.applyManifest("policy", token("[reports:read, reports:write, deals:read]"))
	e.waitFor("policy", "condition=Ready", "apitoken/reporting-etl")
}
