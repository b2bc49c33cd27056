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
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

func TestInspect(t *testing.T) {
	const secretToken = "s3cr3t-auth-token"
	createNamespace(t, "inspect")
	ctx := context.Background()
	createApiToken(t, "inspect", "opaque", nil, tokensv1alpha1.ApiTokenStatus{AccountSID: "TK1", SecretName: "opaque-creds", Conditions: ready(metav1.ConditionTrue, "Ready")})
	createApiToken(t, "inspect", "basic", nil, tokensv1alpha1.ApiTokenStatus{AccountSID: "TK2", SecretName: "basic", Conditions: ready(metav1.ConditionTrue, "Ready")})
	createApiToken(t, "inspect", "nosecret", nil, tokensv1alpha1.ApiTokenStatus{})
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "inspect", Name: "opaque-creds", Annotations: map[string]string{credentialsGenerationAnnotation: "3"}},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"accountSid": []byte("TK1"), "authToken": []byte(secretToken)}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "inspect", Name: "basic", Annotations: map[string]string{credentialsGenerationAnnotation: "1"}},
			Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{"username": []byte("TK2"), "password": []byte(secretToken)}},
	} {
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		args      []string
		want      []string
		wantToken bool
		wantErr   string
	}{
		{"opaque", []string{"inspect", "opaque"}, []string{"inspect/opaque-creds", "Opaque", "accountSid, authToken", "TK1", "Generation:    3 ", "hidden"}, false, ""},
		{"opaque shown", []string{"inspect", "opaque", "--show-token"}, []string{"TK1"}, true, ""},
		{"basic-auth", []string{"inspect", "basic"}, []string{"kubernetes.io/basic-auth", "password, username", "TK2", "(key username)"}, false, ""},
		{"no secret", []string{"inspect", "nosecret"}, nil, false, "secret inspect/nosecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append(tc.args, "-n", "inspect")...)
			if tc.wantErr != "" {
				if r.err == nil || !strings.Contains(r.err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", r.err, tc.wantErr)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.out, w) {
					t.Errorf("output lacks %q:\n%s", w, r.out)
				}
			}
			if strings.Contains(r.out+r.errOut, secretToken) != tc.wantToken {
				t.Errorf("auth token printed: %v, want %v:\n%s", !tc.wantToken, tc.wantToken, r.out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	if r := run(t, "version"); r.err != nil || r.out != "kubectl-apitoken v0.0.0-test\n" {
		t.Fatalf("err %v, output %q", r.err, r.out)
	}
}

func TestInspectListsRenderedKeys(t *testing.T) {
	const secretToken = "s3cr3t-rendered-token"
	ctx := context.Background()
	createNamespace(t, "inspect-rendered")
	at := &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: "inspect-rendered", Name: "templated"},
		Spec: tokensv1alpha1.ApiTokenSpec{PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}, Secret: tokensv1alpha1.SecretTemplate{
			Template: &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"DATABASE_URL": "https://{{ .AccountSID }}:{{ .AuthToken }}@db"}},
			Formats:  []tokensv1alpha1.SecretFormat{tokensv1alpha1.SecretFormatEnv},
		}},
	}
	if err := k8s.Create(ctx, at); err != nil {
		t.Fatal(err)
	}
	at.Status = tokensv1alpha1.ApiTokenStatus{AccountSID: "TK9", SecretName: "templated", Conditions: ready(metav1.ConditionTrue, "Ready")}
	if err := k8s.Status().Update(ctx, at); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "inspect-rendered", Name: "templated", Annotations: map[string]string{credentialsGenerationAnnotation: "1"}},
		Data:       map[string][]byte{"DATABASE_URL": []byte("https://TK9:" + secretToken + "@db"), ".env": []byte(`AUTH_TOKEN="` + secretToken + `"`)},
	}); err != nil {
		t.Fatal(err)
	}
	r := run(t, "inspect", "templated", "-n", "inspect-rendered")
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []string{".env, DATABASE_URL", "Rendered .env:", "Rendered DATABASE_URL:", "(not kept: the rendered keys below hold it)", "(36 bytes)"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out+r.errOut, secretToken) {
		t.Errorf("a rendered value was printed without --show-token:\n%s", r.out)
	}
	if r = run(t, "inspect", "templated", "-n", "inspect-rendered", "--show-token"); !strings.Contains(r.out, "https://TK9:"+secretToken+"@db") {
		t.Errorf("--show-token does not print the rendered value:\n%s", r.out)
	}
}
