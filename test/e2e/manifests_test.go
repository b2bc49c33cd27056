package e2e

// This file: the manifests the tests apply with kubectl, as users write them.

import (
	"fmt"
	"strings"
)

// apiTokenWriter is the rule of a Role that lets its user write ApiTokens.
const apiTokenWriter = "{apiGroups: [tokens.apitoken.dev], resources: [apitokens], verbs: [get, list, watch, create, update, patch]}"

// manifests joins YAML documents into one manifest.
func manifests(docs ...string) string { return strings.Join(docs, "---\n") }

// workload is a Deployment, StatefulSet or DaemonSet named name whose
// container reads the Secret named secret (envFrom), or no Secret when secret
// is empty.
func workload(kind, name, secret string) string {
	serviceName, envFrom := "", ""
	if kind == "StatefulSet" {
		serviceName = "\n  serviceName: " + name
	}
	if secret != "" {
		envFrom = ", envFrom: [{secretRef: {name: " + secret + "}}]"
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: %s
metadata: {name: %s}
spec:%s
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata: {labels: {app: %[2]s}}
    spec: {containers: [{name: %[2]s, image: registry.k8s.io/pause:3.10%[4]s}]}
`, kind, name, serviceName, envFrom)
}

// roleFor is a Role named name with the rules, and a RoleBinding of it to the
// user (a tenant acting with kubectl --as).
func roleFor(name, user string, rules ...string) string {
	return manifests(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: `+name+`}
rules:
- `+strings.Join(rules, "\n- ")+`
`, `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: `+name+`}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: `+name+`}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "`+user+`"}]
`)
}

// apiToken is an ApiToken named name asking for scopes (a YAML list), with
// extra lines of spec (indented by two spaces).
func apiToken(name, scopes, extra string) string {
	return `apiVersion: tokens.apitoken.dev/v1alpha1
kind: ApiToken
metadata: {name: ` + name + `}
spec:
  primaryContact: ops@example.com
  scopes: ` + scopes + `
` + extra
}
