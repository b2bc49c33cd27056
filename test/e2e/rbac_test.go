package e2e

// docs/design.md, invariant 7: the operator runs with the RBAC that its markers
// generate and nothing more. This test compares the requests the API server's
// audit log saw from the operator with config/rbac.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// access is one (verb, API group, resource[/subresource]) of a request or a rule.
type access struct{ verb, group, resource string }

func (a access) String() string {
	group := a.group
	if group == "" {
		group = "core"
	}
	return a.verb + " " + group + "/" + a.resource
}

// unusedButNeeded are the grants of config/rbac that no request of a full
// lifecycle shows, each with the reason it stays. Besides these, list is kept
// wherever watch is used: informers start with a streaming watch (WatchList)
// and fall back to list on an API server that does not stream.
var unusedButNeeded = map[access]string{
	// Never a request: the OwnerReferencesPermissionEnforcement admission plugin
	// (on in OpenShift, off in envtest) checks it when a Secret's controller
	// owner reference sets blockOwnerDeletion.
	{"update", "tokens.apitoken.dev", "apitokens/finalizers"}: "checked by OwnerReferencesPermissionEnforcement",
	// Leader election's (core) event recorder patches an event that repeats;
	// it records one event per process here.
	{"patch", "", "events"}: "repeated leader election events only",
}

// rbacWorkloads are a restart target of each kind, all reading the Secret of
// the ApiToken etl.
var rbacWorkloads = manifests(
	workload("Deployment", "consumer", "etl"),
	workload("StatefulSet", "consumer", "etl"),
	workload("DaemonSet", "consumer", "etl"),
)

// rbacApiTokens are etl (Delete, restarting the rbacWorkloads) and kept (Orphan).
var rbacApiTokens = manifests(
	apiToken("etl", "[reports:read]", `  deletionPolicy: Delete
  secret:
    restartTargets:
    - {kind: Deployment, name: consumer}
    - {kind: StatefulSet, name: consumer}
    - {kind: DaemonSet, name: consumer}
`),
	apiToken("kept", "[reports:read]", "  deletionPolicy: Orphan\n"),
)

func TestOperatorRBACMatchesItsRequests(t *testing.T) {
	// With the audit log, whose requests of the operator must be this test's alone.
	e := startCluster(t, func(o *framework.Options) { o.Audit = true })
	e.driveLifecycle("rbac")
	if _, err := e.c.Metrics(e.ctx); err != nil { // a TokenReview and a SubjectAccessReview
		t.Fatal(err)
	}
	e.c.StopOperator() // releases the lease: its last request
	events, err := framework.ReadAuditLog(e.c.AuditLogPath)
	if err != nil {
		t.Fatal(err)
	}

	used := map[access]int{}
	for _, ev := range events {
		if ev.User.Username != framework.OperatorUser || ev.Stage == auditv1.StageResponseStarted {
			continue
		}
		if ev.ResponseStatus != nil && ev.ResponseStatus.Code == http.StatusForbidden {
			t.Errorf("refused by RBAC: %s %s", ev.Verb, ev.RequestURI)
		}
		if ev.ObjectRef == nil {
			continue // discovery and other non-resource URLs: system:discovery
		}
		resource := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			resource += "/" + ev.ObjectRef.Subresource
		}
		used[access{ev.Verb, ev.ObjectRef.APIGroup, resource}]++
	}
	if len(used) < 10 {
		t.Fatalf("the audit log holds %d kinds of request of the operator: the comparison would prove nothing", len(used))
	}
	managerRole := readRules(t, "role.yaml")
	leaderElection := readRules(t, "leader_election_role.yaml") // a Role in the operator's namespace
	for a, n := range used {
		if !managerRole[a] && !leaderElection[a] {
			t.Errorf("used %d times but granted by no rule of config/rbac: %s", n, a)
		}
	}
	checkAllUsed(t, "role.yaml: drop it from the +kubebuilder:rbac markers", managerRole, used)
	checkAllUsed(t, "leader_election_role.yaml: drop it there", leaderElection, used)
	t.Logf("the operator's requests: %s", summary(used))
}

// checkAllUsed fails for each grant that no request used, unless unusedButNeeded
// lists it or it is the list fallback of a used watch.
func checkAllUsed(t *testing.T, where string, grants map[access]bool, used map[access]int) {
	t.Helper()
	for a := range grants {
		reason, allowed := unusedButNeeded[a]
		listFallback := a.verb == "list" && used[access{"watch", a.group, a.resource}] > 0
		switch {
		case used[a] == 0 && !allowed && !listFallback:
			t.Errorf("never used: %s, granted by config/rbac/%s", a, where)
		case used[a] > 0 && allowed:
			t.Errorf("%s is used now: remove it from unusedButNeeded (%s)", a, reason)
		}
	}
}

// driveLifecycle takes ApiTokens through create, update, reset, rotate,
// disable and delete (Delete and Orphan), with restart targets of each kind.
func (e *env) driveLifecycle(ns string) {
	e.t.Helper()
	// A selector makes the operator read the namespaces' labels.
	e.applyManifest("", strings.Replace(e.sample("tokens_v1alpha1_tokenbackend.yaml"), "\nspec:\n",
		"\nspec:\n  allowedNamespaces: {matchLabels: {apitoken-rbac: allowed}}\n", 1))
	e.waitFor("", "condition=Ready", "tokenbackend/default")
	e.kubectl("create", "namespace", ns)
	e.kubectl("label", "namespace", ns, "apitoken-rbac=allowed")
	e.applyManifest(ns, rbacWorkloads)
	e.applyManifest(ns, rbacApiTokens)
	e.waitFor(ns, "condition=Ready", "apitoken/etl", "apitoken/kept")

	e.kubectl("-n", ns, "patch", "apitoken", "etl", "--type=merge", "-p", `{"spec":{"scopes":["reports:read","actions:read"]}}`)
	e.waitFor(ns, "jsonpath={.status.observedGeneration}=2", "apitoken/etl")
	for _, change := range []string{"reset", "rotate"} {
		e.kubectl("-n", ns, "annotate", "apitoken", "etl", "tokens.apitoken.dev/"+change+"=rbac-1")
		e.waitFor(ns, "jsonpath={.status.lastHandled"+strings.ToUpper(change[:1])+change[1:]+"}=rbac-1", "apitoken/etl")
	}
	for _, kind := range []string{"deployment", "statefulset", "daemonset"} {
		if got := e.kubectl("-n", ns, "get", kind, "consumer", "-o", `jsonpath={.spec.template.metadata.annotations.tokens\.apitoken\.dev/credentials}`); got == "" {
			e.t.Errorf("the %s was never rolled", kind)
		}
	}
	e.kubectl("-n", ns, "patch", "apitoken", "etl", "--type=merge", "-p", `{"spec":{"disabled":true}}`)
	e.waitFor(ns, "jsonpath={.status.state}=Disabled", "apitoken/etl")
	e.kubectl("-n", ns, "delete", "apitoken", "etl", "kept", framework.KubectlTimeout(framework.LongWait))
	if got := e.kubectl("-n", ns, "get", "secrets", "-o", "name"); !strings.Contains(got, "secret/kept") || strings.Contains(got, "secret/etl") {
		e.t.Errorf("after deletion the Secrets are %q, want kept's (Orphan) and not etl's (Delete)", got)
	}
}

// readRules reads a Role or ClusterRole of config/rbac into the accesses it grants.
func readRules(t *testing.T, file string) map[access]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole // a Role has the same rules
	if err := yaml.Unmarshal([]byte(strings.TrimPrefix(string(data), "---\n")), &role); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	grants := map[access]bool{}
	for _, rule := range role.Rules {
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					if slices.Contains([]string{group, resource, verb}, "*") {
						t.Errorf("%s grants a wildcard: %+v", file, rule)
					}
					grants[access{verb, group, resource}] = true
				}
			}
		}
	}
	if len(grants) == 0 {
		t.Fatalf("%s grants nothing", file)
	}
	return grants
}

func summary(used map[access]int) string {
	var out []string
	for a, n := range used {
		out = append(out, fmt.Sprintf("%s ×%d", a, n))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
