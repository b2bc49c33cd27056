package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Tenants of the cluster, each acting through kubectl --as with the RBAC a
// namespace's owner would give it (impersonation adds system:authenticated).
const (
	// reportingDev may write ApiTokens in shop, and get and patch Deployment reporting.
	reportingDev = "alice@shop.example.com"
	// paymentsViewer may write ApiTokens in shop, and only get Deployment payments.
	paymentsViewer = "bob@shop.example.com"
	// analyticsDev may write ApiTokens in analytics, and nothing else.
	analyticsDev = "carol@analytics.example.com"
)

const shopWorkloadsAndRBAC = `apiVersion: apps/v1
kind: Deployment
metadata: {name: reporting}
spec:
  selector: {matchLabels: {app: reporting}}
  template:
    metadata: {labels: {app: reporting}}
    spec: {containers: [{name: reporting, image: registry.k8s.io/pause:3.10, envFrom: [{secretRef: {name: reporting-etl}}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: payments}
spec:
  selector: {matchLabels: {app: payments}}
  template:
    metadata: {labels: {app: payments}}
    spec: {containers: [{name: payments, image: registry.k8s.io/pause:3.10}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reporting-dev}
rules:
- {apiGroups: [tokens.apitoken.dev], resources: [apitokens], verbs: [get, list, watch, create, update, patch]}
- {apiGroups: [apps], resources: [deployments], resourceNames: [reporting], verbs: [get, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: payments-viewer}
rules:
- {apiGroups: [tokens.apitoken.dev], resources: [apitokens], verbs: [get, list, watch, create, update, patch]}
- {apiGroups: [apps], resources: [deployments], resourceNames: [payments], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reporting-dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reporting-dev}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "` + reportingDev + `"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: payments-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: payments-viewer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "` + paymentsViewer + `"}]
`

const analyticsRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: analytics-dev}
rules:
- {apiGroups: [tokens.apitoken.dev], resources: [apitokens], verbs: [get, list, watch, create, update, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: analytics-dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: analytics-dev}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "` + analyticsDev + `"}]
`

// kubectlAs runs kubectl as the user (impersonated by the cluster admin).
func (e *env) kubectlAs(user, stdin string, args ...string) (string, error) {
	return e.c.KubectlWithInput(e.ctx, stdin, append([]string{"--as=" + user}, args...)...)
}

// waitCanI waits until RBAC lets the user do what the question asks (kubectl auth can-i).
func (e *env) waitCanI(user, ns, question string) {
	e.t.Helper()
	e.eventually(user+" may "+question, 30*time.Second, func() error {
		out, err := e.kubectlAs(user, "", append([]string{"-n", ns, "auth", "can-i"}, strings.Fields(question)...)...)
		if strings.TrimSpace(out) != "yes" {
			return fmt.Errorf("%q: %w", out, err)
		}
		return nil
	})
}

// expectRefused fails unless err is apitoken-policy's refusal naming want.
func expectRefused(t *testing.T, out string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("admitted (%s); want a refusal naming %q", strings.TrimSpace(out), want)
	}
	for _, s := range []string{"ValidatingAdmissionPolicy 'apitoken-policy'", want} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("kubectl printed %q; want it to name %q", err, s)
		}
	}
}

// TestAdmissionTrustWithKubectlAs drives apitoken-policy as tenants do, with
// kubectl --as: a restart target that the user may not patch is refused, one it
// may patch is admitted; a tenant whose TokenBackend policy was tightened since
// its token was made can still disable it, narrow its scopes and reset it, and
// nothing wider.
func TestAdmissionTrustWithKubectlAs(t *testing.T) {
	e := startCluster(t)
	e.applySample("", "tokens_v1alpha1_tokenbackend.yaml")
	e.kubectl("wait", "--for=condition=Ready", "tokenbackend/default", "--timeout=60s")

	t.Run("restart targets", func(t *testing.T) {
		e.kubectl("create", "namespace", "shop")
		e.applyManifest("shop", shopWorkloadsAndRBAC)
		e.waitCanI(reportingDev, "shop", "patch deployments/reporting")
		e.waitCanI(paymentsViewer, "shop", "create apitokens.tokens.apitoken.dev")
		token := func(name string, targets ...string) string {
			m := `apiVersion: tokens.apitoken.dev/v1alpha1
kind: ApiToken
metadata: {name: ` + name + `}
spec:
  primaryContact: ops@example.com
  scopes: [reports:read]
  secret:
    restartTargets:
`
			for _, target := range targets {
				m += "    - {kind: Deployment, name: " + target + "}\n"
			}
			return m
		}

		out, err := e.kubectlAs(paymentsViewer, token("payments-sync", "payments"), "-n", "shop", "apply", "-f", "-")
		expectRefused(t, out, err, "restartTargets: user may not patch Deployment payments")
		if got := e.kubectl("-n", "shop", "get", "apitokens", "-o", "name"); got != "" {
			t.Errorf("a refused ApiToken was stored: %s", got)
		}

		if out, err := e.kubectlAs(reportingDev, token("reporting-etl", "reporting"), "-n", "shop", "apply", "-f", "-"); err != nil {
			t.Fatalf("%s naming reporting: %v (%s)", reportingDev, err, out)
		}
		e.kubectl("-n", "shop", "wait", "--for=condition=Ready", "apitoken/reporting-etl", "--timeout=60s")

		// An update adding a target the user may not patch is refused; a change
		// that adds none is admitted, also from a user who may not patch the
		// targets already there.
		out, err = e.kubectlAs(reportingDev, token("reporting-etl", "reporting", "payments"), "-n", "shop", "apply", "-f", "-")
		expectRefused(t, out, err, "restartTargets: user may not patch Deployment payments")
		if out, err := e.kubectlAs(paymentsViewer, "", "-n", "shop", "patch", "apitoken", "reporting-etl", "--type=merge",
			"-p", `{"spec":{"description":"edited by a viewer of payments"}}`); err != nil {
			t.Errorf("a change adding no target was refused: %v (%s)", err, out)
		}
		if out, err := e.kubectlAs(paymentsViewer, "", "-n", "shop", "annotate", "apitoken", "reporting-etl", "tokens.apitoken.dev/reset=bob-1"); err != nil {
			t.Errorf("a reset was refused: %v (%s)", err, out)
		}
		if got := e.kubectl("-n", "shop", "get", "apitoken", "reporting-etl", "-o", "jsonpath={.spec.secret.restartTargets[*].name}"); got != "reporting" {
			t.Errorf("restart targets %q, want reporting", got)
		}
	})

	t.Run("a tightened policy still lets the tenant disable, narrow and reset", func(t *testing.T) {
		e.applySample("", "tokens_v1alpha1_tokenbackend_tenants.yaml") // team-analytics: reports:* and *:read
		e.kubectl("wait", "--for=condition=Ready", "tokenbackend/team-analytics", "--timeout=60s")
		e.kubectl("create", "namespace", "analytics")
		e.kubectl("label", "namespace", "analytics", "tenant=analytics")
		e.applyManifest("analytics", analyticsRBAC)
		e.waitCanI(analyticsDev, "analytics", "patch apitokens.tokens.apitoken.dev")
		token := func(scopes, extra string) string {
			return `apiVersion: tokens.apitoken.dev/v1alpha1
kind: ApiToken
metadata: {name: etl}
spec:
  backendRef: {name: team-analytics}
  primaryContact: ops@example.com
  scopes: ` + scopes + `
` + extra
		}
		apply := func(manifest string) (string, error) {
			return e.kubectlAs(analyticsDev, manifest, "-n", "analytics", "apply", "-f", "-")
		}
		// The API server reads the TokenBackends through a watch: wait until
		// admission sees the catalog (a scope outside it is refused).
		e.eventually("admission sees the catalog of team-analytics", 30*time.Second, func() error {
			if _, err := e.kubectlAs(analyticsDev, token("[reports:export]", ""), "-n", "analytics", "apply", "--dry-run=server", "-f", "-"); err == nil {
				return errors.New("admitted")
			}
			return nil
		})
		wide := "[reports:read, reports:write, deals:read]"
		if out, err := apply(token(wide, "")); err != nil {
			t.Fatalf("%v (%s)", err, out)
		}
		e.kubectl("-n", "analytics", "wait", "--for=condition=Ready", "apitoken/etl", "--timeout=60s")

		e.kubectl("patch", "tokenbackend", "team-analytics", "--type=merge", "-p", `{"spec":{"policy":{"allowedScopes":["reports:read"]}}}`)
		e.eventually("admission sees the tightened policy", 30*time.Second, func() error {
			if _, err := e.kubectlAs(analyticsDev, token(wide, "  description: edited\n"), "-n", "analytics", "apply", "--dry-run=server", "-f", "-"); err == nil {
				return errors.New("admitted")
			}
			return nil
		})

		for _, step := range []struct{ what, manifest string }{
			{"disabled: true", token(wide, "  disabled: true\n")},
			{"fewer scopes", token("[reports:read, deals:read]", "  disabled: true\n")},
		} {
			if out, err := apply(step.manifest); err != nil {
				t.Fatalf("kubectl apply with %s was refused: %v (%s)", step.what, err, out)
			}
		}
		if out, err := e.kubectlAs(analyticsDev, "", "-n", "analytics", "annotate", "apitoken", "etl", "tokens.apitoken.dev/reset=incident-1"); err != nil {
			t.Fatalf("kubectl annotate reset was refused: %v (%s)", err, out)
		}
		// And the operator carries them out while the ApiToken is Stalled
		// (PolicyViolation): the token is disabled, narrowed and reset.
		sid := e.kubectl("-n", "analytics", "get", "apitoken", "etl", "-o", "jsonpath={.status.accountSid}")
		e.eventually("the reset, disable and narrowing reach the backend", 60*time.Second, func() error {
			tok, _, err := e.admin().Get(e.ctx, sid, "")
			if err != nil {
				return err
			}
			handled := e.kubectl("-n", "analytics", "get", "apitoken", "etl", "-o", "jsonpath={.status.lastHandledReset}")
			if tok.State != "Disabled" || tok.Generation != 2 || strings.Join(tok.Scopes, ",") != "deals:read,reports:read" || handled != "incident-1" {
				return fmt.Errorf("backend token %s generation %d scopes %v; lastHandledReset %q", tok.State, tok.Generation, tok.Scopes, handled)
			}
			return nil
		})
		got := e.kubectl("-n", "analytics", "get", "apitoken", "etl", "-o",
			`jsonpath={.spec.disabled} {.spec.scopes} {.metadata.annotations.tokens\.apitoken\.dev/reset}`)
		if want := `true ["reports:read","deals:read"] incident-1`; got != want {
			t.Errorf("stored %q, want %q", got, want)
		}

		out, err := apply(token("[reports:read, deals:read, deals:write]", "  disabled: true\n"))
		expectRefused(t, out, err, "scopes [deals:read, deals:write] are not allowed by TokenBackend team-analytics")
		out, err = apply(token("[reports:read, deals:read]", "  disabled: false\n"))
		expectRefused(t, out, err, "scopes [deals:read] are not allowed by TokenBackend team-analytics")
		if got := e.kubectl("-n", "analytics", "get", "apitoken", "etl", "-o", "jsonpath={.spec.disabled}"); got != "true" {
			t.Errorf("spec.disabled %q after the refused enable, want true", got)
		}
	})
}
