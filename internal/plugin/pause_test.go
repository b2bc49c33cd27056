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

	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

func TestPauseResume(t *testing.T) {
	createNamespace(t, "pause")
	createApiToken(t, "pause", "p", map[string]string{"keep": "me"}, tokensv1alpha1.ApiTokenStatus{})
	for _, tc := range []struct {
		cmd        string
		want       string
		wantPaused bool
	}{
		{"pause", "apitoken.tokens.apitoken.dev/p paused\n", true},
		{"pause", "apitoken.tokens.apitoken.dev/p already paused\n", true},
		{"resume", "apitoken.tokens.apitoken.dev/p resumed\n", false},
		{"resume", "apitoken.tokens.apitoken.dev/p not paused\n", false},
	} {
		r := run(t, tc.cmd, "p", "-n", "pause")
		if r.err != nil || r.out != tc.want {
			t.Fatalf("%s: err %v, output %q, want %q", tc.cmd, r.err, r.out, tc.want)
		}
		at := &tokensv1alpha1.ApiToken{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "pause", Name: "p"}, at); err != nil {
			t.Fatal(err)
		}
		v, has := at.Annotations[tokensv1alpha1.PausedAnnotation]
		if tc.wantPaused != (v == "true") || (!tc.wantPaused && has) || at.Annotations["keep"] != "me" {
			t.Fatalf("%s: annotations %v", tc.cmd, at.Annotations)
		}
	}
	if r := run(t, "pause", "nope", "-n", "pause"); r.err == nil || !strings.Contains(r.err.Error(), "not found") {
		t.Fatalf("missing ApiToken: %v", r.err)
	}
}
