package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// Tenants of the cluster, each acting through kubectl --as with the RBAC a
// namespace's owner would give it (impersonation adds system:authenticated).
const (
	// reportingDev may write ApiTokens in shop, and get and patch Deployment reporting.
	reportingDev = "alice@shop.example.com"
	// paymentsViewer may write ApiTokens in shop, and only get Deployment payments.
	paymentsViewer = "bob@shop.example.com"
	// analyticsDev may write ApiTokens in tightened, and nothing else.
	analyticsDev = "carol@analytics.example.com"
	// tightened is the TokenBackend whose policy TestAdmissionTrustWithKubectlAs
	// tightens: the tenants sample's team-analytics, renamed.
	tightened = "analytics-tightened"
)

// shopWorkloadsAndRBAC are two Deployments of shop, one reading the Secret of
// reporting-etl, and the Roles of their users.
var shopWorkloadsAndRBAC = manifests(
	workload("Deployment", "reporting", "reporting-etl"),
	workload("Deployment", "payments", ""),
	roleFor("reporting-dev", reportingDev, apiTokenWriter,
		"{apiGroups: [apps], resources: [deployments], resourceNames: [reporting], verbs: [get, patch]}"),
	roleFor("payments-viewer", paymentsViewer, apiTokenWriter,
		"{apiGroups: [apps], resources: [deployments], resourceNames: [payments], verbs: [get]}"),
)

// kubectlAs runs kubectl as the user (impersonated by the cluster admin).
func (e *env) kubectlAs(user, stdin string, args ...string) (string, error) {
	return e.c.KubectlWithInput(e.ctx, stdin, append([]string{"--as=" + user}, args...)...)
}

// waitCanI waits until RBAC lets the user do what the question asks (kubectl auth can-i).
func (e *env) waitCanI(user, ns, question string) {
	e.t.Helper()
	e.eventually(user+" may "+question, framework.WaitTimeout, func() error {
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
	e := sharedCluster(t)
	e.defaultBackend()

	t.Run("restart targets", func(t *testing.T) {
		e.kubectl("create", "namespace", "shop")
		e.applyManifest("shop", shopWorkloadsAndRBAC)
		e.waitCanI(reportingDev, "shop", "patch deployments/reporting")
		e.waitCanI(paymentsViewer, "shop", "create apitokens.tokens.apitoken.dev")
		token := func(name string, targets ...string) string {
			m := apiToken(name, "[reports:read]", "  secret:\n    restartTargets:\n")
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
		e.waitFor("shop", "condition=Ready", "apitoken/reporting-etl")

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
		// The tenants sample's team-analytics (reports:* and *:read) under a name
		// of this test's own: it tightens the policy, which other tests of the
		// shared cluster read as the sample has it.
		e.applyManifest("", strings.Replace(e.sample("tokens_v1alpha1_tokenbackend_tenants.yaml"), "name: team-analytics", "name: "+tightened, 1))
		e.waitFor("", "condition=Ready", "tokenbackend/"+tightened)
		e.kubectl("create", "namespace", "tightened")
		e.kubectl("label", "namespace", "tightened", "tenant=analytics")
		e.applyManifest("tightened", roleFor("analytics-dev", analyticsDev, apiTokenWriter))
		e.waitCanI(analyticsDev, "tightened", "patch apitokens.tokens.apitoken.dev")
		token := func(scopes, extra string) string {
			return apiToken("etl", scopes, "  backendRef: {name: "+tightened+"}\n"+extra)
		}
		apply := func(manifest string) (string, error) {
			return e.kubectlAs(analyticsDev, manifest, "-n", "tightened", "apply", "-f", "-")
		}
		// The API server reads the TokenBackends through a watch: wait until
		// admission sees the catalog (a scope outside it is refused).
		e.eventually("admission sees the catalog of "+tightened, framework.WaitTimeout, func() error {
			if _, err := e.kubectlAs(analyticsDev, token("[reports:export]", ""), "-n", "tightened", "apply", "--dry-run=server", "-f", "-"); err == nil {
				return errors.New("admitted")
			}
			return nil
		})
		wide := "[reports:read, reports:write, deals:read]"
		if out, err := apply(token(wide, "")); err != nil {
			t.Fatalf("%v (%s)", err, out)
		}
		e.waitFor("tightened", "condition=Ready", "apitoken/etl")

		e.kubectl("patch", "tokenbackend", tightened, "--type=merge", "-p", `{"spec":{"policy":{"allowedScopes":["reports:read"]}}}`)
		e.eventually("admission sees the tightened policy", framework.WaitTimeout, func() error {
			if _, err := e.kubectlAs(analyticsDev, token(wide, "  description: edited\n"), "-n", "tightened", "apply", "--dry-run=server", "-f", "-"); err == nil {
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
		if out, err := e.kubectlAs(analyticsDev, "", "-n", "tightened", "annotate", "apitoken", "etl", "tokens.apitoken.dev/reset=incident-1"); err != nil {
			t.Fatalf("kubectl annotate reset was refused: %v (%s)", err, out)
		}
		// And the operator carries them out while the ApiToken is Stalled
		// (PolicyViolation): the token is disabled, narrowed and reset.
		sid := e.kubectl("-n", "tightened", "get", "apitoken", "etl", "-o", "jsonpath={.status.accountSid}")
		e.eventually("the reset, disable and narrowing reach the backend", framework.LongWait, func() error {
			tok, _, err := e.admin().Get(e.ctx, sid, "")
			if err != nil {
				return err
			}
			handled := e.kubectl("-n", "tightened", "get", "apitoken", "etl", "-o", "jsonpath={.status.lastHandledReset}")
			if tok.State != "Disabled" || tok.Generation != 2 || strings.Join(tok.Scopes, ",") != "deals:read,reports:read" || handled != "incident-1" {
				return fmt.Errorf("backend token %s generation %d scopes %v; lastHandledReset %q", tok.State, tok.Generation, tok.Scopes, handled)
			}
			return nil
		})
		got := e.kubectl("-n", "tightened", "get", "apitoken", "etl", "-o",
			`jsonpath={.spec.disabled} {.spec.scopes} {.metadata.annotations.tokens\.apitoken\.dev/reset}`)
		if want := `true ["reports:read","deals:read"] incident-1`; got != want {
			t.Errorf("stored %q, want %q", got, want)
		}

		out, err := apply(token("[reports:read, deals:read, deals:write]", "  disabled: true\n"))
		expectRefused(t, out, err, "scopes [deals:read, deals:write] are not allowed by TokenBackend "+tightened)
		out, err = apply(token("[reports:read, deals:read]", "  disabled: false\n"))
		expectRefused(t, out, err, "scopes [deals:read] are not allowed by TokenBackend "+tightened)
		if got := e.kubectl("-n", "tightened", "get", "apitoken", "etl", "-o", "jsonpath={.spec.disabled}"); got != "true" {
			t.Errorf("spec.disabled %q after the refused enable, want true", got)
		}
	})
}
