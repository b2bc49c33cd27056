package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPolicyRefusedAtKubectlApply installs config/default as users do and
// applies the two-tenant sample of the README: kubectl apply of an ApiToken that
// its TokenBackend's policy or catalog does not allow prints the admission
// policy's message and stores nothing; within the policy it becomes Ready.
func TestPolicyRefusedAtKubectlApply(t *testing.T) {
	e := startCluster(t)
	// config/default keeps the names docs/design.md gives (no name prefix).
	e.kubectl("get", "validatingadmissionpolicy/apitoken-policy", "validatingadmissionpolicybinding/apitoken-policy")
	e.applySample("", "tokens_v1alpha1_tokenbackend_tenants.yaml")
	e.kubectl("wait", "--for=condition=Ready", "tokenbackend/team-analytics", "tokenbackend/team-partners", "--timeout=60s")
	e.kubectl("wait", "--for=jsonpath={.status.catalog.contacts[0]}=admin@example.com", "tokenbackend/team-analytics", "--timeout=30s")
	e.kubectl("create", "namespace", "analytics")
	e.kubectl("label", "namespace", "analytics", "tenant=analytics")

	token := func(backendName, scopes, extra string) string {
		return `apiVersion: tokens.apitoken.dev/v1alpha1
kind: ApiToken
metadata:
  name: reporting-etl
spec:
  backendRef: {name: ` + backendName + `}
  primaryContact: ops@example.com
  scopes: ` + scopes + `
` + extra
	}
	cases := map[string]struct{ manifest, want string }{
		"scope outside the policy": {token("team-analytics", "[reports:read, accounts:write]", ""),
			"scopes [accounts:write] are not allowed by TokenBackend team-analytics"},
		"scope outside the catalog": {token("team-analytics", "[reports:export]", ""),
			"scopes [reports:export] are not in the catalog of TokenBackend team-analytics"},
		"contact outside the catalog": {strings.Replace(token("team-analytics", "[reports:read]", ""), "ops@", "stranger@", 1),
			"primaryContact stranger@example.com is not a contact in the catalog of TokenBackend team-analytics"},
		"apiVersion outside the catalog": {token("team-analytics", "[reports:read]", "  apiVersion: 11\n"),
			"apiVersion 11 is not in the catalog of TokenBackend team-analytics"},
		"deletion policy outside the policy": {token("team-partners", "[partners:read]", "  deletionPolicy: Orphan\n"),
			"deletionPolicy Orphan is not allowed by TokenBackend team-partners"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			// The API server reads the TokenBackends it admits against through a
			// watch: wait (with server-side dry runs) until it has seen their catalogs.
			e.eventually("the admission policy refuses", 30*time.Second, func() error {
				if _, err := e.c.KubectlWithInput(e.ctx, tc.manifest, "apply", "--dry-run=server", "-n", "analytics", "-f", "-"); err == nil {
					return errors.New("admitted")
				}
				return nil
			})
			out, err := e.c.KubectlWithInput(e.ctx, tc.manifest, "apply", "-n", "analytics", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply succeeded: %s", out)
			}
			t.Logf("kubectl apply: %v", err)
			for _, want := range []string{"ValidatingAdmissionPolicy 'apitoken-policy'", tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("kubectl apply printed %q; want it to name %q", err, want)
				}
			}
			if got := e.kubectl("-n", "analytics", "get", "apitokens", "-o", "name"); got != "" {
				t.Errorf("a refused ApiToken was stored: %s", got)
			}
		})
	}

	e.applyManifest("analytics", token("team-analytics", "[reports:read, reports:write, deals:read]", ""))
	e.kubectl("-n", "analytics", "wait", "--for=condition=Ready", "apitoken/reporting-etl", "--timeout=60s")
}
