package install

// This file: the chart rendered (no cluster): lint, what each value renders,
// CRDs and RBAC equal to config/, the values schema, the synced files.

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestChartLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"default values": nil,
		"every option":   valuesFile(t, "values-full.yaml"),
	} {
		t.Run(name, func(t *testing.T) {
			linter := lint.AllWithKubeVersion(chartDir(), values, "apitoken-system", kubeVersion)
			for _, msg := range linter.Messages {
				if msg.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", msg)
				}
			}
		})
	}
}

// defaultKinds counts the objects the chart renders with its default values
// by kind, with changes: a count for a kind, 0 for a kind that is absent.
func defaultKinds(changes map[string]int) map[string]int {
	kinds := map[string]int{"CustomResourceDefinition": 2, "ServiceAccount": 1, "ClusterRole": 4, "ClusterRoleBinding": 1,
		"Role": 1, "RoleBinding": 1, "Deployment": 1, "Service": 1}
	for kind, n := range changes {
		kinds[kind] = n
		if n == 0 {
			delete(kinds, kind)
		}
	}
	return kinds
}

// renderCases are values and what they must render: want counts objects by
// kind (kinds not listed must be absent; the admission policy objects of
// config/admission are added to every case).
var renderCases = map[string]struct {
	values      string
	valuesFile  string
	apiVersions []string
	// want counts objects by kind; kinds not listed must be absent.
	want  map[string]int
	check func(t *testing.T, objs []*unstructured.Unstructured)
}{
	"default values": {
		want: defaultKinds(nil),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			d := ofKind(objs, "Deployment")[0]
			wantContainer(t, d, "image", "apitoken-operator:0.1.0")
			wantArgs(t, d, []string{"--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081",
				"--max-concurrent-reconciles=10", "--gc-min-heap=40Mi", "--max-procs=1", "--kube-api-qps=-1", "--kube-api-burst=200", "--kube-api-compression=false", "--zap-log-level=info"})
			wantRestricted(t, d)
			for _, crd := range ofKind(objs, "CustomResourceDefinition") {
				if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
					t.Errorf("CRD %s lacks helm.sh/resource-policy: keep", crd.GetName())
				}
			}
			for _, cr := range ofKind(objs, "ClusterRole") {
				if strings.HasSuffix(cr.GetName(), "-viewer-role") && cr.GetLabels()["rbac.authorization.k8s.io/aggregate-to-view"] != "true" {
					t.Errorf("viewer role not aggregated to view")
				}
			}
		},
	},
	"crds off": {
		values: "crds: {enabled: false}",
		want:   defaultKinds(map[string]int{"CustomResourceDefinition": 0}),
	},
	"crds not kept, no aggregation, digest, no leader election, compression": {
		values: `{crds: {keep: false}, rbac: {aggregateToView: false, aggregateToEdit: false},
			image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, leaderElection: {enabled: false},
			kubeAPI: {compression: true}}`,
		want: defaultKinds(nil),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			for _, crd := range ofKind(objs, "CustomResourceDefinition") {
				if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
					t.Errorf("CRD %s is kept", crd.GetName())
				}
			}
			for _, cr := range ofKind(objs, "ClusterRole") {
				for k := range cr.GetLabels() {
					if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
						t.Errorf("ClusterRole %s has %s", cr.GetName(), k)
					}
				}
			}
			d := ofKind(objs, "Deployment")[0]
			wantContainer(t, d, "image", "apitoken-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
			wantArgs(t, d, []string{"--metrics-bind-address=:8443", "--health-probe-bind-address=:8081",
				"--max-concurrent-reconciles=10", "--gc-min-heap=40Mi", "--max-procs=1", "--kube-api-qps=-1", "--kube-api-burst=200", "--kube-api-compression=true", "--zap-log-level=info"})
		},
	},
	"plain HTTP metrics": {
		values: "metrics: {secure: false, port: 8080, serviceMonitor: {enabled: true}}",
		want:   defaultKinds(map[string]int{"ServiceMonitor": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantArg(t, ofKind(objs, "Deployment")[0], "--metrics-secure=false")
			wantMetricsCert(t, ofKind(objs, "Deployment")[0], "")
			if got := toYAML(ofKind(objs, "ServiceMonitor")[0].Object["spec"]); !strings.Contains(got, "scheme: http\n") || strings.Contains(got, "bearerTokenFile") {
				t.Errorf("ServiceMonitor for plain HTTP:\n%s", got)
			}
		},
	},
	"ServiceMonitor verifies the metrics certificate by default": {
		values: "metrics: {serviceMonitor: {enabled: true}}",
		want:   defaultKinds(map[string]int{"ServiceMonitor": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantVerifiedMetrics(t, objs, fullname+"-metrics-cert")
		},
	},
	"cert-manager issues the metrics certificate, self-signed": {
		values: "metrics: {certificate: {certManager: {enabled: true}}, serviceMonitor: {enabled: true}}",
		want:   defaultKinds(map[string]int{"ServiceMonitor": 1, "Certificate": 1, "Issuer": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantVerifiedMetrics(t, objs, fullname+"-metrics-cert")
			issuer := ofKind(objs, "Issuer")[0]
			if toYAML(issuer.Object["spec"]) != "selfSigned: {}\n" {
				t.Errorf("Issuer %s spec:\n%s", issuer.GetName(), toYAML(issuer.Object["spec"]))
			}
			ref, _, _ := unstructured.NestedStringMap(ofKind(objs, "Certificate")[0].Object, "spec", "issuerRef")
			if want := map[string]string{"name": issuer.GetName(), "kind": "Issuer", "group": "cert-manager.io"}; !maps.Equal(ref, want) {
				t.Errorf("Certificate issuerRef %v, want %v", ref, want)
			}
		},
	},
	"cert-manager issues the metrics certificate from your issuer, no ServiceMonitor": {
		values: "metrics: {certificate: {certManager: {enabled: true, issuerRef: {name: corp-ca, kind: ClusterIssuer}}}}",
		want:   defaultKinds(map[string]int{"Certificate": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantMetricsCert(t, ofKind(objs, "Deployment")[0], fullname+"-metrics-cert")
			ref, _, _ := unstructured.NestedStringMap(ofKind(objs, "Certificate")[0].Object, "spec", "issuerRef")
			if want := map[string]string{"name": "corp-ca", "kind": "ClusterIssuer"}; !maps.Equal(ref, want) {
				t.Errorf("Certificate issuerRef %v, want %v", ref, want)
			}
		},
	},
	"metrics certificate from a Secret of yours": {
		values: "metrics: {certificate: {secretName: corp-metrics-tls}, serviceMonitor: {enabled: true}}",
		want:   defaultKinds(map[string]int{"ServiceMonitor": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantVerifiedMetrics(t, objs, "corp-metrics-tls")
		},
	},
	"ServiceMonitor opts out of verification": {
		values: "metrics: {serviceMonitor: {enabled: true, insecureSkipVerify: true}}",
		want:   defaultKinds(map[string]int{"ServiceMonitor": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			tls, _, _ := unstructured.NestedMap(ofKind(objs, "ServiceMonitor")[0].Object["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any), "tlsConfig")
			if got := toYAML(tls); got != "insecureSkipVerify: true\n" {
				t.Errorf("tlsConfig with insecureSkipVerify:\n%s", got)
			}
			wantMetricsCert(t, ofKind(objs, "Deployment")[0], "") // the operator's own self-signed certificate
		},
	},
	"ServiceMonitor opts out the older way, tlsConfig.insecureSkipVerify": {
		values: "metrics: {serviceMonitor: {enabled: true, tlsConfig: {insecureSkipVerify: true}}}",
		want:   defaultKinds(map[string]int{"ServiceMonitor": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantMetricsCert(t, ofKind(objs, "Deployment")[0], "") // no Secret to wait for
		},
	},
	"monitoring asked for, CRDs missing, renderMode ifCRDExists": {
		values: `{metrics: {serviceMonitor: {enabled: true, renderMode: ifCRDExists}}, prometheusRule: {enabled: true, renderMode: ifCRDExists}}`,
		want:   defaultKinds(nil),
	},
	"monitoring asked for, CRDs present, renderMode ifCRDExists": {
		values:      `{metrics: {serviceMonitor: {enabled: true, renderMode: ifCRDExists}}, prometheusRule: {enabled: true, renderMode: ifCRDExists}}`,
		apiVersions: []string{"monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"},
		want:        defaultKinds(map[string]int{"ServiceMonitor": 1, "PrometheusRule": 1}),
	},
	"watched namespaces: Roles for Secrets and ApiTokens": {
		values: "watchNamespaces: [team-a, team-b]",
		want:   defaultKinds(map[string]int{"Role": 4, "RoleBinding": 4}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			wantArg(t, ofKind(objs, "Deployment")[0], "--watch-namespaces=team-a,team-b")
		},
	},
	"tokenservice in memory": {
		values: "tokenservice: {enabled: true, persistence: {enabled: false}}",
		want:   defaultKinds(map[string]int{"Deployment": 2, "Service": 2}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			d := findNamed(t, ofKind(objs, "Deployment"), "apitoken-system", fullname+"-tokenservice")
			wantArgs(t, d, []string{"--listen=:8080", "--rate-limit=0", "--auth-failure-limit=1"})
			wantContainer(t, d, "image", "apitoken-tokenservice:0.1.0")
			wantRestricted(t, d)
		},
	},
	"every option": {
		valuesFile: "values-full.yaml",
		want: defaultKinds(map[string]int{"Role": 4, "RoleBinding": 4, "Deployment": 2, "Service": 2, "PodDisruptionBudget": 1,
			"ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 1, "PersistentVolumeClaim": 1, "Certificate": 1, "Issuer": 1}),
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			for _, d := range ofKind(objs, "Deployment") {
				wantRestricted(t, d)
			}
			wantVerifiedMetrics(t, objs, "tokens-metrics-cert")
		},
	},
}

func TestChartRendersWhatTheValuesAsk(t *testing.T) {
	for name, tc := range renderCases {
		t.Run(name, func(t *testing.T) {
			values := parseValues(t, tc.values)
			if tc.valuesFile != "" {
				values = valuesFile(t, tc.valuesFile)
			}
			objs := mustDecode(t, mustRender(t, values, renderOptions{apiVersions: tc.apiVersions}))
			want := maps.Clone(tc.want) // plus the admission policy, on in every case
			for kind, n := range admissionKinds(t) {
				want[kind] += n
			}
			if diff := cmp.Diff(want, kindCounts(objs)); diff != "" {
				t.Errorf("objects by kind (-want +got):\n%s", diff)
			}
			if tc.check != nil {
				tc.check(t, objs)
			}
		})
	}
}

func TestChartCRDsEqualConfig(t *testing.T) {
	want := configCRDs(t)
	got := ofKind(mustDecode(t, mustRender(t, nil, renderOptions{})), "CustomResourceDefinition")
	if len(got) != len(want) {
		t.Fatalf("the chart renders %d CRDs, config/crd/bases has %d", len(got), len(want))
	}
	for i := range want {
		if diff := cmp.Diff(withoutInstallMetadata(want[i]), withoutInstallMetadata(got[i])); diff != "" {
			t.Errorf("CRD %s differs from config/crd/bases (-config +chart):\n%s", want[i].GetName(), diff)
		}
	}
}

func TestChartRBACEqualsConfig(t *testing.T) {
	want := ruleSet(configRules(t))
	cases := map[string]struct {
		values string
		// roles are the namespaces that get the manager Role.
		roles []string
	}{
		"cluster-wide: the ClusterRole is config/rbac/role.yaml": {},
		"watched namespaces: ClusterRole + each Role are config/rbac/role.yaml, Secrets, ApiTokens and workloads only in Roles": {
			values: "watchNamespaces: [team-a, team-b]",
			roles:  []string{"team-a", "team-b"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			objs := mustDecode(t, mustRender(t, parseValues(t, tc.values), renderOptions{}))
			cluster := findNamed(t, ofKind(objs, "ClusterRole"), "", fullname+"-manager-role")
			clusterRules := ruleSet(cluster.Object["rules"].([]any))
			if len(tc.roles) == 0 {
				if diff := cmp.Diff(want, clusterRules); diff != "" {
					t.Errorf("ClusterRole rules differ from config/rbac/role.yaml (-config +chart):\n%s", diff)
				}
				return
			}
			for key := range clusterRules {
				if strings.HasPrefix(key, "/secrets ") || strings.Contains(key, "/apitokens") || strings.HasPrefix(key, "apps/") {
					t.Errorf("scoped ClusterRole grants %s", key)
				}
			}
			for _, ns := range tc.roles {
				role := findNamed(t, ofKind(objs, "Role"), ns, fullname+"-manager-role")
				union := ruleSet(role.Object["rules"].([]any))
				for k := range clusterRules {
					union[k] = true
				}
				if diff := cmp.Diff(want, union); diff != "" {
					t.Errorf("ClusterRole + Role in %s differ from config/rbac/role.yaml (-config +chart):\n%s", ns, diff)
				}
			}
		})
	}
}

// The leader election Role of the chart grants what config/rbac's does, no more.
func TestChartLeaderElectionRoleEqualsConfig(t *testing.T) {
	config := readObjects(t, filepath.Join(repoRoot, "config", "rbac", "leader_election_role.yaml"))
	if len(config) != 1 {
		t.Fatalf("config/rbac/leader_election_role.yaml holds %d objects", len(config))
	}
	objs := mustDecode(t, mustRender(t, parseValues(t, ""), renderOptions{}))
	role := findNamed(t, ofKind(objs, "Role"), "apitoken-system", fullname+"-leader-election-role")
	if diff := cmp.Diff(ruleSet(config[0].Object["rules"].([]any)), ruleSet(role.Object["rules"].([]any))); diff != "" {
		t.Errorf("leader election Role differs from config/rbac/leader_election_role.yaml (-config +chart):\n%s", diff)
	}
}

// TestValuesSchemaRejectsTypos: values the chart must refuse to render, each
// with a word of the error that names why (the values schema, or the chart's
// own check).
func TestValuesSchemaRejectsTypos(t *testing.T) {
	cases := map[string]struct{ values, want string }{
		"unknown top-level key":            {"replicacount: 2", "schema"},
		"unknown nested key":               {"metrics: {serviceMonitor: {enable: true}}", "schema"},
		"image.repo instead of repository": {"image: {repo: example.com/x}", "schema"},
		"watchNamespaces as a string":      {"watchNamespaces: team-a,team-b", "schema"},
		"replicaCount as a string":         {"replicaCount: two", "schema"},
		"crds.keep as a string":            {"crds: {keep: \"yes\"}", "schema"},
		"unknown log level":                {"logLevel: verbose", "schema"},
		"unknown renderMode":               {"prometheusRule: {renderMode: sometimes}", "schema"},
		"a digest that is no digest":       {"image: {digest: latest}", "schema"},
		"tokenservice typo":                {"tokenservice: {enabeld: true}", "schema"},
		"kubeAPI.qps zero":                 {"kubeAPI: {qps: 0}", "schema"},
		"kubeAPI.compression as a string":  {"kubeAPI: {compression: \"no\"}", "schema"},
		"insecureSkipVerify as a string":   {"metrics: {serviceMonitor: {insecureSkipVerify: \"yes\"}}", "schema"},
		"certManager misspelt":             {"metrics: {certificate: {certmanager: {enabled: true}}}", "schema"},
		"issuerRef without a name":         {"metrics: {certificate: {certManager: {enabled: true, issuerRef: {kind: ClusterIssuer}}}}", "schema"},
		"authFailureLimit negative":        {"tokenservice: {authFailureLimit: -1}", "schema"},
		"replicas without leader election": {"{replicaCount: 2, leaderElection: {enabled: false}}", "leaderElection"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(parseValues(t, tc.values), renderOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("values %q rendered; want an error naming %q, got %v", tc.values, tc.want, err)
			}
		})
	}
}

// TestChartFilesMatchConfig fails when make chart-sync was not run: the
// chart's copies of generated and kept files must equal config/ byte for byte.
func TestChartFilesMatchConfig(t *testing.T) {
	pairs := map[string]string{
		"config/rbac/role.yaml":            "files/rbac/role.yaml",
		"config/prometheus/rules.yaml":     "files/prometheus/rules.yaml",
		"config/prometheus/dashboard.json": "files/prometheus/dashboard.json",
	}
	for _, dir := range []struct{ src, dest string }{{"config/crd/bases", "files/crds"}, {"config/admission", "files/admission"}} {
		srcs, _ := filepath.Glob(filepath.Join(repoRoot, dir.src, "*.yaml"))
		dests, _ := filepath.Glob(filepath.Join(chartDir(), dir.dest, "*.yaml"))
		for _, s := range srcs {
			if filepath.Base(s) != "kustomization.yaml" {
				pairs[filepath.Join(dir.src, filepath.Base(s))] = filepath.Join(dir.dest, filepath.Base(s))
			}
		}
		for _, d := range dests {
			if _, err := os.Stat(filepath.Join(repoRoot, dir.src, filepath.Base(d))); err != nil {
				t.Errorf("chart file %s has no source in %s: run make chart-sync", d, dir.src)
			}
		}
	}
	for src, dest := range pairs {
		a, err := os.ReadFile(filepath.Join(repoRoot, src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(chartDir(), dest))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("charts/apitoken-operator/%s differs from %s: run make chart-sync", dest, src)
		}
	}
}

// admissionKinds counts the objects of config/admission by kind: the chart
// renders them with admissionPolicy.enabled (the default).
func admissionKinds(t *testing.T) map[string]int {
	t.Helper()
	counts := map[string]int{}
	paths, _ := filepath.Glob(filepath.Join(repoRoot, "config", "admission", "*.yaml"))
	for _, p := range paths {
		if filepath.Base(p) == "kustomization.yaml" {
			continue
		}
		for _, o := range readObjects(t, p) {
			counts[o.GetKind()]++
		}
	}
	return counts
}

// ruleSet flattens RBAC rules to "group/resource verb" keys.
func ruleSet(rules []any) map[string]bool {
	set := map[string]bool{}
	for _, r := range rules {
		rule := r.(map[string]any)
		for _, g := range stringList(rule["apiGroups"]) {
			for _, res := range stringList(rule["resources"]) {
				for _, v := range stringList(rule["verbs"]) {
					set[g+"/"+res+" "+v] = true
				}
			}
		}
	}
	return set
}

func stringList(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func findNamed(t *testing.T, objs []*unstructured.Unstructured, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s/%s among %d objects", namespace, name, len(objs))
	return nil
}

func container(t *testing.T, d *unstructured.Unstructured) map[string]any {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("Deployment %s has %d containers", d.GetName(), len(containers))
	}
	return containers[0].(map[string]any)
}

func wantContainer(t *testing.T, d *unstructured.Unstructured, field, want string) {
	t.Helper()
	if got := container(t, d)[field]; got != want {
		t.Errorf("container %s = %v, want %s", field, got, want)
	}
}

func wantArgs(t *testing.T, d *unstructured.Unstructured, want []string) {
	t.Helper()
	got, _, _ := unstructured.NestedStringSlice(container(t, d), "args")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
}

func wantArg(t *testing.T, d *unstructured.Unstructured, want string) {
	t.Helper()
	got, _, _ := unstructured.NestedStringSlice(container(t, d), "args")
	for _, a := range got {
		if a == want {
			return
		}
	}
	t.Errorf("args %v lack %s", got, want)
}

// wantRestricted checks the restricted Pod Security profile's settings.
func wantRestricted(t *testing.T, d *unstructured.Unstructured) {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "securityContext")
	c, _, _ := unstructured.NestedMap(container(t, d), "securityContext")
	checks := map[string]bool{
		"pod runAsNonRoot":                  pod["runAsNonRoot"] == true,
		"pod seccompProfile RuntimeDefault": toYAML(pod["seccompProfile"]) == "type: RuntimeDefault\n",
		"allowPrivilegeEscalation false":    c["allowPrivilegeEscalation"] == false,
		"readOnlyRootFilesystem":            c["readOnlyRootFilesystem"] == true,
		"capabilities drop ALL":             toYAML(c["capabilities"]) == "drop:\n- ALL\n",
		"container runAsNonRoot":            c["runAsNonRoot"] == true,
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("Deployment %s: not %s", d.GetName(), what)
		}
	}
}

// metricsCertPath is where the chart mounts the metrics certificate's Secret.
const metricsCertPath = "/tmp/k8s-metrics-server/metrics-certs"

// wantMetricsCert checks that the operator serves its metrics certificate from
// secret (--metrics-cert-path, the Secret mounted there), or, for "", that it
// makes its own (no flag, no volume).
func wantMetricsCert(t *testing.T, d *unstructured.Unstructured, secret string) {
	t.Helper()
	args, _, _ := unstructured.NestedStringSlice(container(t, d), "args")
	mounts, _, _ := unstructured.NestedSlice(container(t, d), "volumeMounts")
	volumes, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
	if secret == "" {
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--metrics-cert-path") }) || len(mounts) > 0 || len(volumes) > 0 {
			t.Errorf("the operator gets a metrics certificate: args %v, mounts %v, volumes %v", args, mounts, volumes)
		}
		return
	}
	if !slices.Contains(args, "--metrics-cert-path="+metricsCertPath) {
		t.Errorf("args %v lack --metrics-cert-path=%s", args, metricsCertPath)
	}
	wantMounts := "- mountPath: " + metricsCertPath + "\n  name: metrics-cert\n  readOnly: true\n"
	wantVolumes := "- name: metrics-cert\n  secret:\n    secretName: " + secret + "\n"
	if toYAML(mounts) != wantMounts || toYAML(volumes) != wantVolumes {
		t.Errorf("volumeMounts:\n%svolumes:\n%swant the Secret %s at %s", toYAML(mounts), toYAML(volumes), secret, metricsCertPath)
	}
}

// wantVerifiedMetrics checks that the ServiceMonitor verifies the metrics
// certificate with ca.crt of secret and the metrics Service's DNS name, that
// the operator serves from that Secret, and that a cert-manager Certificate, if
// any, writes it for that name.
func wantVerifiedMetrics(t *testing.T, objs []*unstructured.Unstructured, secret string) {
	t.Helper()
	svc := ofKind(objs, "Service")[0]
	for _, s := range ofKind(objs, "Service") {
		if strings.HasSuffix(s.GetName(), "-metrics") {
			svc = s
		}
	}
	serverName := svc.GetName() + "." + svc.GetNamespace() + ".svc"
	endpoints, _, _ := unstructured.NestedSlice(ofKind(objs, "ServiceMonitor")[0].Object, "spec", "endpoints")
	tls, _, _ := unstructured.NestedMap(endpoints[0].(map[string]any), "tlsConfig")
	want := map[string]any{"ca": map[string]any{"secret": map[string]any{"name": secret, "key": "ca.crt"}}, "serverName": serverName}
	if diff := cmp.Diff(want, tls); diff != "" {
		t.Errorf("ServiceMonitor tlsConfig (-want +got), no insecureSkipVerify:\n%s", diff)
	}
	if scheme := endpoints[0].(map[string]any)["scheme"]; scheme != "https" {
		t.Errorf("ServiceMonitor scheme %v, want https", scheme)
	}
	wantMetricsCert(t, findNamed(t, ofKind(objs, "Deployment"), svc.GetNamespace(), strings.TrimSuffix(svc.GetName(), "-metrics")+"-controller-manager"), secret)
	for _, c := range ofKind(objs, "Certificate") {
		spec := c.Object["spec"].(map[string]any)
		dns, _, _ := unstructured.NestedStringSlice(spec, "dnsNames")
		if spec["secretName"] != secret || !slices.Contains(dns, serverName) {
			t.Errorf("Certificate %s: secretName %v, dnsNames %v; want %s, %s", c.GetName(), spec["secretName"], dns, secret, serverName)
		}
	}
}

func TestChartMonitoringEqualsConfig(t *testing.T) {
	objs := mustDecode(t, mustRender(t, parseValues(t, "{prometheusRule: {enabled: true}, metrics: {dashboard: {enabled: true}}}"), renderOptions{}))
	rule := ofKind(objs, "PrometheusRule")[0]
	want := readObjects(t, filepath.Join(repoRoot, "config", "prometheus", "rules.yaml"))[0]
	if diff := cmp.Diff(want.Object["spec"], rule.Object["spec"]); diff != "" {
		t.Errorf("PrometheusRule spec (-config +chart):\n%s", diff)
	}
	dashboard := ofKind(objs, "ConfigMap")[0]
	got, _, _ := unstructured.NestedString(dashboard.Object, "data", "apitoken-operator.json")
	if wantJSON := string(readFile(t, filepath.Join(repoRoot, "config", "prometheus", "dashboard.json"))); strings.TrimSpace(got) != strings.TrimSpace(wantJSON) {
		t.Errorf("the chart's dashboard differs from config/prometheus/dashboard.json")
	}
	if dashboard.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard", dashboard.GetLabels())
	}
}

// TestChartAdmissionPolicy: the chart renders the policy files that
// make chart-sync copies from config/admission, behind admissionPolicy.enabled.
// The repository has none yet, so a copy of the chart gets one.
func TestChartAdmissionPolicy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "apitoken-operator")
	if err := os.CopyFS(dir, os.DirFS(chartDir())); err != nil {
		t.Fatal(err)
	}
	policy := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: apitoken-policy
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [tokens.apitoken.dev]
      apiVersions: [v1alpha1]
      operations: [CREATE, UPDATE]
      resources: [apitokens]
  validations:
  - expression: "true"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: apitoken-policy
spec:
  policyName: apitoken-policy
  validationActions: [Deny]
`
	if err := os.RemoveAll(filepath.Join(dir, "files", "admission")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "files", "admission"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "files", "admission", "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	// The repository's chart renders what config/admission holds (nothing yet).
	inRepo := 0
	for _, n := range admissionKinds(t) {
		inRepo += n
	}
	cases := map[string]struct {
		values string
		dir    string
		want   int
	}{
		"the repository's chart":  {want: inRepo},
		"a policy file, enabled":  {dir: dir, want: 2},
		"a policy file, disabled": {dir: dir, values: "admissionPolicy: {enabled: false}"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			objs := mustDecode(t, mustRender(t, parseValues(t, tc.values), renderOptions{chartDir: tc.dir}))
			counts := kindCounts(objs)
			if got := counts["ValidatingAdmissionPolicy"] + counts["ValidatingAdmissionPolicyBinding"]; got != tc.want {
				t.Errorf("%d admission objects, want %d", got, tc.want)
			}
			for _, o := range ofKind(objs, "ValidatingAdmissionPolicy") {
				if o.GetName() != "apitoken-policy" || o.GetLabels()["app.kubernetes.io/part-of"] != "apitoken-operator" {
					t.Errorf("policy %s labels %v", o.GetName(), o.GetLabels())
				}
			}
		})
	}
}
