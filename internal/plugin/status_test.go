/*
Copyright 2026 The apitoken-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package plugin

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

func TestStatus(t *testing.T) {
	createNamespace(t, "status-a")
	createNamespace(t, "status-b")
	createNamespace(t, "status-empty")
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(testNow.Add(d)) }
	next := at(29 * 24 * time.Hour)
	due := at(-time.Hour)
	createApiToken(t, "status-a", "reporting-etl", nil, tokensv1alpha1.ApiTokenStatus{
		AccountSID: "TK0001", State: tokensv1alpha1.TokenStateEnabled, APIVersion: 16, SecretName: "reporting-etl",
		Conditions: ready(metav1.ConditionTrue, "Ready"), NextRotationTime: &next,
		History: []tokensv1alpha1.CredentialChange{
			{Type: tokensv1alpha1.CredentialsReset, Nonce: "n1", Time: at(-5 * time.Minute), AccountSID: "TK0001", Generation: 2},
			{Type: tokensv1alpha1.CredentialsCreated, Time: at(-2 * time.Hour), AccountSID: "TK0001", Generation: 1},
		},
	})
	createApiToken(t, "status-a", "billing", map[string]string{tokensv1alpha1.PausedAnnotation: "true"}, tokensv1alpha1.ApiTokenStatus{
		AccountSID: "TK0002", State: tokensv1alpha1.TokenStateDisabled, APIVersion: 15, SecretName: "billing",
		Conditions: ready(metav1.ConditionFalse, "BackendUnavailable"),
	})
	createApiToken(t, "status-a", "fresh", nil, tokensv1alpha1.ApiTokenStatus{})
	createApiToken(t, "status-b", "search", nil, tokensv1alpha1.ApiTokenStatus{
		AccountSID: "TK0003", State: tokensv1alpha1.TokenStateEnabled, APIVersion: 16, SecretName: "search-creds",
		Conditions: ready(metav1.ConditionTrue, "Ready"), NextRotationTime: &due,
		History: []tokensv1alpha1.CredentialChange{{Type: tokensv1alpha1.CredentialsRotated, Time: at(-10 * time.Minute), AccountSID: "TK0003", Generation: 1}},
	})

	for _, tc := range []struct {
		name   string
		args   []string
		golden string
	}{
		{"namespace", []string{"status", "-n", "status-a"}, "status_namespace.golden"},
		{"wide", []string{"status", "-n", "status-a", "-o", "wide"}, "status_wide.golden"},
		{"one", []string{"status", "reporting-etl", "-n", "status-a"}, "status_one.golden"},
		{"all namespaces", []string{"status", "-A"}, "status_all.golden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if r.err != nil {
				t.Fatalf("%v: %s", r.err, r.errOut)
			}
			checkGolden(t, tc.golden, onlyNamespaces(r.out, "NAMESPACE", "status-a", "status-b"))
		})
	}
}

// onlyNamespaces keeps, of a -A table, the header and the rows of the given
// namespaces (other tests share the control plane); other tables pass whole.
func onlyNamespaces(out, header string, namespaces ...string) string {
	lines := strings.SplitAfter(out, "\n")
	if !strings.HasPrefix(lines[0], header) {
		return out
	}
	kept := lines[0]
	for _, l := range lines[1:] {
		for _, ns := range namespaces {
			if strings.HasPrefix(l, ns+" ") {
				kept += l
			}
		}
	}
	return realign(kept)
}

// realign lays the kept rows out again, as if the others had not been there.
func realign(table string) string {
	var b strings.Builder
	w := printers.GetNewTabWriter(&b)
	for _, l := range strings.Split(strings.TrimSuffix(table, "\n"), "\n") {
		fmt.Fprintln(w, strings.Join(regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1), "\t"))
	}
	_ = w.Flush()
	return b.String()
}

func TestStatusOutputFormats(t *testing.T) {
	createNamespace(t, "status-o")
	createApiToken(t, "status-o", "one", nil, tokensv1alpha1.ApiTokenStatus{AccountSID: "TK0101", Conditions: ready(metav1.ConditionTrue, "Ready")})
	for _, tc := range []struct {
		name     string
		args     []string
		wantKind string
		wantErr  string
		wantErrO string
	}{
		{"json list", []string{"status", "-n", "status-o", "-o", "json"}, "ApiTokenList", "", ""},
		{"yaml one", []string{"status", "one", "-n", "status-o", "-o", "yaml"}, "ApiToken", "", ""},
		{"json one", []string{"status", "one", "-n", "status-o", "-o", "json"}, "ApiToken", "", ""},
		{"missing", []string{"status", "nope", "-n", "status-o"}, "", "not found", ""},
		{"name with -A", []string{"status", "one", "-A"}, "", "cannot be used", ""},
		{"empty namespace", []string{"status", "-n", "status-none"}, "", "", "No ApiTokens found in status-none namespace."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if tc.wantErr != "" {
				if r.err == nil || !strings.Contains(r.err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", r.err, tc.wantErr)
				}
				return
			}
			if r.err != nil {
				t.Fatalf("%v: %s", r.err, r.errOut)
			}
			if tc.wantErrO != "" {
				if !strings.Contains(r.errOut, tc.wantErrO) {
					t.Fatalf("stderr %q, want %q", r.errOut, tc.wantErrO)
				}
				return
			}
			var obj struct {
				APIVersion, Kind string
			}
			body := r.out
			if strings.Contains(tc.name, "yaml") {
				if !strings.Contains(body, "kind: ApiToken\n") || !strings.Contains(body, "apiVersion: tokens.apitoken.dev/v1alpha1") {
					t.Fatalf("yaml output:\n%s", body)
				}
				return
			}
			if err := json.Unmarshal([]byte(body), &obj); err != nil {
				t.Fatalf("%v:\n%s", err, body)
			}
			if obj.Kind != tc.wantKind || obj.APIVersion == "" {
				t.Fatalf("kind %q apiVersion %q, want %q", obj.Kind, obj.APIVersion, tc.wantKind)
			}
		})
	}
}
