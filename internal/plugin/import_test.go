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
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

func TestImport(t *testing.T) {
	ctx := context.Background()
	ts := framework.NewTokenService(t, "admin-key-import", nil)
	cp := &framework.ControlPlane{Client: k8s}
	if err := cp.CreateAdminKey(ctx, ts.AdminKey); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, framework.TokenBackendFor("imp", ts.URL, time.Minute)); err != nil {
		t.Fatal(err)
	}
	createNamespace(t, "import")
	v15 := 15
	reqs := []backend.CreateRequest{
		{Name: "Reporting ETL", Description: "Nightly export", APIVersion: &v15, PrimaryContact: "ops@example.com",
			DeveloperEmails: []string{"dev@example.com", "a@example.com"}, Scopes: []string{"reports:read", "actions:read"}, State: backend.StateEnabled},
		{Name: "Reporting ETL", PrimaryContact: "admin@example.com", State: backend.StateDisabled},
		{Name: "claimed", PrimaryContact: "ops@example.com", State: backend.StateEnabled, ExternalID: "some-uid"},
	}
	var toks []*backend.Token
	for i, req := range reqs {
		tok, _, err := ts.Admin.Create(ctx, "import-"+string(rune('a'+i)), req)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		want    []*backend.Token
		wantErr string
	}{
		{"two tokens", []string{toks[0].SID, toks[1].SID}, toks[:2], ""},
		{"claimed", []string{toks[2].SID, toks[0].SID}, toks[:1], "1 of 2 tokens not imported"},
		{"unknown", []string{"TKnope"}, nil, "not imported"},
		{"unmanaged: every unclaimed token, by SID", []string{"--unmanaged"}, sortedBySID(toks[:2]), ""},
		{"unmanaged and SIDs", []string{"--unmanaged", toks[0].SID}, nil, "not both"},
		{"no sid", nil, nil, "no SID given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append([]string{"import", "--backend", "imp", "-n", "import"}, tc.args...)...)
			if (r.err == nil) != (tc.wantErr == "") || (r.err != nil && !strings.Contains(r.err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q (stderr %s)", r.err, tc.wantErr, r.errOut)
			}
			docs := strings.Split(strings.TrimPrefix(r.out, "---\n"), "---\n")
			if r.out == "" {
				docs = nil
			}
			if len(docs) != len(tc.want) {
				t.Fatalf("%d manifests, want %d:\n%s", len(docs), len(tc.want), r.out)
			}
			for i, doc := range docs {
				checkManifest(t, doc, tc.want[i])
			}
		})
	}
}

// checkManifest decodes a manifest, checks that every field the operator keeps
// equals the token's, and that the API server accepts it (CRD validation).
func checkManifest(t *testing.T, doc string, tok *backend.Token) {
	t.Helper()
	at := &tokensv1alpha1.ApiToken{}
	if err := yaml.UnmarshalStrict([]byte(doc), at); err != nil {
		t.Fatalf("%v:\n%s", err, doc)
	}
	s := at.Spec
	sorted := func(v []string) []string { v = slices.Clone(v); slices.Sort(v); return v }
	if s.Adopt == nil || s.Adopt.AccountSID != tok.SID || s.BackendRef.Name != "imp" || at.Namespace != "import" ||
		s.DisplayName != tok.Name || s.Description != tok.Description || s.APIVersion == nil || int(*s.APIVersion) != tok.APIVersion ||
		s.PrimaryContact != tok.PrimaryContact || !slices.Equal(sorted(s.DeveloperEmails), sorted(tok.DeveloperEmails)) ||
		!slices.Equal(sorted(s.Scopes), sorted(tok.Scopes)) || s.Disabled != (tok.State == backend.StateDisabled) {
		t.Fatalf("manifest does not match token %+v:\n%s", tok, doc)
	}
	at.ObjectMeta = metav1.ObjectMeta{Namespace: at.Namespace, GenerateName: at.Name + "-"}
	if err := k8s.Create(context.Background(), at); err != nil {
		t.Fatalf("API server refuses the manifest: %v\n%s", err, doc)
	}
}

func sortedBySID(toks []*backend.Token) []*backend.Token {
	out := slices.Clone(toks)
	slices.SortFunc(out, func(a, b *backend.Token) int { return strings.Compare(a.SID, b.SID) })
	return out
}
