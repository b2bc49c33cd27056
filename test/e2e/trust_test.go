package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// The trust boundary end to end (docs/design.md, "Trust boundary"; invariant 9):
// two tenants, each a user acting with kubectl --as under a namespaced Role that
// lets it write its own ApiTokens and their status, against the operator binary
// under its generated RBAC and the tokenservice binary. Nothing tenant A writes
// reaches tenant B's token, and A's own incident response is never blocked.

const (
	tenantA = "mallory@team-a.example.com"
	tenantB = "bob@team-b.example.com"
	// tenantsBackend is the TokenBackend of both tenants.
	tenantsBackend = "tenants"
)

// tenantRBAC lets a user write ApiTokens and their status, read Secrets and
// events, and get and patch Deployments in one namespace.
func tenantRBAC(user string) string {
	return roleFor("tenant", user,
		"{apiGroups: [tokens.apitoken.dev], resources: [apitokens, apitokens/status], verbs: [get, list, watch, create, update, patch, delete]}",
		`{apiGroups: [""], resources: [secrets], verbs: [get, list]}`,
		"{apiGroups: [events.k8s.io], resources: [events], verbs: [get, list]}",
		"{apiGroups: [apps], resources: [deployments], verbs: [get, list, create, patch]}")
}

// tenantToken is an ApiToken of the tenants (on tenantsBackend), with extra
// lines of spec.
func tenantToken(name, extra string) string {
	return apiToken(name, "[reports:read]", "  backendRef: {name: "+tenantsBackend+"}\n"+extra)
}

// asTenant runs kubectl as the user in its namespace and fails the test on error.
func (e *env) asTenant(user, ns, stdin string, args ...string) string {
	e.t.Helper()
	out, err := e.kubectlAs(user, stdin, append([]string{"-n", ns}, args...)...)
	if err != nil {
		e.t.Fatalf("kubectl --as=%s %v: %v (%s)", user, args, err, out)
	}
	return out
}

func TestTenantsCannotReachEachOther(t *testing.T) {
	e := sharedCluster(t)
	// A TokenBackend of the test's own, whose policy it changes on the shared
	// cluster; the tenants' ApiTokens name it.
	e.ownBackend(tenantsBackend)
	for ns, user := range map[string]string{"team-a": tenantA, "team-b": tenantB} {
		e.kubectl("create", "namespace", ns)
		e.applyManifest(ns, tenantRBAC(user))
		e.waitCanI(user, ns, "patch apitokens.tokens.apitoken.dev --subresource=status")
	}
	e.asTenant(tenantB, "team-b", tenantToken("billing", ""), "apply", "-f", "-")
	e.asTenant(tenantA, "team-a", tenantToken("etl", ""), "apply", "-f", "-")
	e.waitFor("team-b", "condition=Ready", "apitoken/billing")
	e.waitFor("team-a", "condition=Ready", "apitoken/etl")
	victim := e.kubectl("-n", "team-b", "get", "apitoken", "billing", "-o", "jsonpath={.status.accountSid}")
	own := e.kubectl("-n", "team-a", "get", "apitoken", "etl", "-o", "jsonpath={.status.accountSid}")
	victimCreds := e.secretCredentials("team-b", "billing")
	if _, err := e.kubectlAs(tenantA, "", "-n", "team-b", "get", "apitoken", "billing"); err == nil {
		t.Fatal("tenant A may read tenant B's ApiToken: the test's RBAC is wrong")
	}
	victimUntouched := func(t *testing.T) {
		t.Helper()
		tok, _, err := e.admin().Get(e.ctx, victim, "")
		if err != nil {
			t.Fatalf("tenant B's token: %v", err)
		}
		if tok.Generation != 1 || tok.State != backend.StateEnabled {
			t.Errorf("tenant B's token was changed: generation %d, %s", tok.Generation, tok.State)
		}
		if got := e.verify(victimCreds, "reports:read"); got != 200 {
			t.Errorf("tenant B's consumers are refused: %d", got)
		}
		if got := e.secretCredentials("team-a", "etl"); got.AuthToken.Reveal() == victimCreds.AuthToken.Reveal() {
			t.Error("tenant B's auth token is in tenant A's Secret")
		}
	}
	forge := func(patch string) {
		e.asTenant(tenantA, "team-a", "", "patch", "apitoken", "etl", "--subresource=status", "--type=merge", "-p", patch)
	}
	foreignTokenWarned := func() error {
		out := e.asTenant(tenantA, "team-a", "", "get", "events.events.k8s.io", "--field-selector", "reason=ForeignToken", "-o", "name")
		if strings.TrimSpace(out) == "" {
			return errors.New("no ForeignToken event")
		}
		return nil
	}

	t.Run("a forged accountSid and a reset", func(t *testing.T) {
		forge(`{"status":{"accountSid":"` + victim + `","backendETag":""}}`)
		e.asTenant(tenantA, "team-a", "", "annotate", "apitoken", "etl", "tokens.apitoken.dev/reset=steal-1")
		e.eventually("tenant A's own token is reset and its status rebuilt", framework.LongWait, func() error {
			got := e.kubectl("-n", "team-a", "get", "apitoken", "etl", "-o", "jsonpath={.status.accountSid} {.status.lastHandledReset}")
			if got != own+" steal-1" {
				return fmt.Errorf("status %q", got)
			}
			return foreignTokenWarned()
		})
		e.eventually("tenant A's Secret works with its own token", framework.WaitTimeout, func() error {
			if creds := e.secretCredentials("team-a", "etl"); creds.AccountSID != own || e.verify(creds, "reports:read") != 200 {
				return fmt.Errorf("Secret holds %s", creds.AccountSID)
			}
			return nil
		})
		victimUntouched(t)
	})

	t.Run("a forged accountSid and a deleted Secret", func(t *testing.T) {
		forge(`{"status":{"accountSid":"` + victim + `"}}`)
		e.kubectl("-n", "team-a", "delete", "secret", "etl")
		e.eventually("tenant A's Secret is written again from its own token", framework.LongWait, func() error {
			if creds := e.secretCredentials("team-a", "etl"); creds.AccountSID != own {
				return fmt.Errorf("Secret holds %q", creds.AccountSID)
			}
			return nil
		})
		victimUntouched(t)
	})

	t.Run("a forged retiring token", func(t *testing.T) {
		past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		forge(`{"status":{"retiringTokens":[{"accountSid":"` + victim + `","deleteAfter":"` + past + `"}]}}`)
		e.asTenant(tenantA, "team-a", "", "patch", "apitoken", "etl", "--type=merge", "-p", `{"spec":{"description":"touch"}}`)
		e.eventually("the forged retiring token is dropped", framework.LongWait, func() error {
			if got := e.kubectl("-n", "team-a", "get", "apitoken", "etl", "-o", "jsonpath={.status.retiringTokens}"); got != "" {
				return fmt.Errorf("retiringTokens %s", got)
			}
			return nil
		})
		victimUntouched(t)
	})

	t.Run("a restart target that does not use the Secret", func(t *testing.T) {
		e.asTenant(tenantA, "team-a", workload("Deployment", "payments", ""), "apply", "-f", "-")
		e.asTenant(tenantA, "team-a", tenantToken("etl", "  secret:\n    restartTargets: [{kind: Deployment, name: payments}]\n"), "apply", "-f", "-")
		e.asTenant(tenantA, "team-a", "", "annotate", "--overwrite", "apitoken", "etl", "tokens.apitoken.dev/reset=roll-1")
		e.eventually("the reset is handled and the target skipped", framework.LongWait, func() error {
			out := e.asTenant(tenantA, "team-a", "", "get", "events.events.k8s.io", "--field-selector", "reason=RestartTargetNotConsumer", "-o", "name")
			if strings.TrimSpace(out) == "" {
				return errors.New("no RestartTargetNotConsumer event")
			}
			return nil
		})
		if got := e.kubectl("-n", "team-a", "get", "deployment", "payments", "-o", `jsonpath={.spec.template.metadata.annotations}`); got != "" {
			t.Errorf("a Deployment that does not use the Secret was rolled: %s", got)
		}
	})

	t.Run("a rotate storm", func(t *testing.T) {
		e.asTenant(tenantA, "team-a", tenantToken("storm", "  rotation: {overlap: 168h}\n"), "apply", "-f", "-")
		e.waitFor("team-a", "condition=Ready", "apitoken/storm")
		uid := e.kubectl("-n", "team-a", "get", "apitoken", "storm", "-o", "jsonpath={.metadata.uid}")
		for i := range 14 {
			e.asTenant(tenantA, "team-a", "", "annotate", "--overwrite", "apitoken", "storm", fmt.Sprintf("tokens.apitoken.dev/rotate=storm-%d", i))
		}
		e.kubectl("-n", "team-a", "wait", "--for=jsonpath={.status.conditions[?(@.type==\"Reconciling\")].reason}=RotationDeferred", "apitoken/storm",
			framework.KubectlTimeout(3*framework.LongWait/2))
		tracked := strings.Fields(e.kubectl("-n", "team-a", "get", "apitoken", "storm", "-o", "jsonpath={.status.accountSid} {.status.retiringTokens[*].accountSid}"))
		if len(tracked) != 1+8 {
			t.Errorf("%d tokens in the status, want the current one and 8 retiring", len(tracked))
		}
		found, err := e.admin().FindByExternalID(e.ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range found {
			if !slices.Contains(tracked, tok.SID) {
				t.Errorf("backend token %s of the ApiToken is in no status field", tok.SID)
			}
		}
		if len(found) != len(tracked) {
			t.Errorf("%d backend tokens, %d in the status", len(found), len(tracked))
		}
	})

	t.Run("a paused ApiToken deleted where only Delete is allowed", func(t *testing.T) {
		e.kubectl("patch", "tokenbackend", tenantsBackend, "--type=merge", "-p", `{"spec":{"policy":{"allowedDeletionPolicies":["Delete"]}}}`)
		uid := e.kubectl("-n", "team-a", "get", "apitoken", "etl", "-o", "jsonpath={.metadata.uid}")
		e.asTenant(tenantA, "team-a", "", "annotate", "apitoken", "etl", "tokens.apitoken.dev/paused=true")
		e.waitFor("team-a", "condition=Paused", "apitoken/etl")
		e.asTenant(tenantA, "team-a", "", "delete", "apitoken", "etl", framework.KubectlTimeout(framework.LongWait))
		found, err := e.admin().FindByExternalID(e.ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 0 {
			t.Errorf("%d backend tokens left by a paused ApiToken's deletion where only Delete is allowed", len(found))
		}
		victimUntouched(t)
	})
}
