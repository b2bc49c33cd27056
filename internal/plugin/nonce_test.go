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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// playOperator waits until the ApiToken carries annotation, then records its
// value as handled (as the operator does) with a history entry of generation gen.
func playOperator(t *testing.T, key client.ObjectKey, kind nonceKind, gen int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		at := &tokensv1alpha1.ApiToken{}
		if err := k8s.Get(ctx, key, at); err == nil && at.Annotations[kind.annotation] != "" {
			nonce := at.Annotations[kind.annotation]
			if kind.verb == "reset" {
				at.Status.LastHandledReset = nonce
			} else {
				at.Status.LastHandledRotate = nonce
			}
			at.Status.History = append([]tokensv1alpha1.CredentialChange{{
				Type: kind.change, Nonce: nonce, Time: metav1.Now(), AccountSID: "TK-NEW", Generation: gen,
			}}, at.Status.History...)
			if err := k8s.Status().Update(ctx, at); err == nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Error("the annotation never appeared")
}

func TestResetRotate(t *testing.T) {
	createNamespace(t, "nonce")
	for _, tc := range []struct {
		name     string
		kind     nonceKind
		wait     bool
		operator bool
		want     string
		wantErr  string
	}{
		{"reset", resetKind, false, false, "reset requested (tokens.apitoken.dev/reset=kubectl-apitoken-", ""},
		{"rotate", rotateKind, false, false, "rotate requested (tokens.apitoken.dev/rotate=kubectl-apitoken-", ""},
		{"reset wait", resetKind, true, true, "apitoken.tokens.apitoken.dev/reset-wait reset: generation 3, accountSid TK-NEW", ""},
		{"rotate wait", rotateKind, true, true, "apitoken.tokens.apitoken.dev/rotate-wait rotated: generation 3, accountSid TK-NEW", ""},
		{"reset wait timeout", resetKind, true, false, "", "not handled within 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			createApiToken(t, "nonce", name, map[string]string{"keep": "me"}, tokensv1alpha1.ApiTokenStatus{
				AccountSID: "TK-OLD", Conditions: ready(metav1.ConditionTrue, "Ready"),
				History: []tokensv1alpha1.CredentialChange{{Type: tokensv1alpha1.CredentialsCreated, Time: metav1.Now(), AccountSID: "TK-OLD", Generation: 2}},
			})
			key := client.ObjectKey{Namespace: "nonce", Name: name}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if tc.operator {
					playOperator(t, key, tc.kind, 3)
				}
			}()
			args := []string{tc.kind.verb, name, "-n", "nonce"}
			if tc.wait {
				args = append(args, "--wait", "--timeout", "1s")
				if tc.operator {
					args[len(args)-1] = "30s"
				}
			}
			r := run(t, args...)
			<-done
			if tc.wantErr != "" {
				if r.err == nil || !strings.Contains(r.err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", r.err, tc.wantErr)
				}
				return
			}
			if r.err != nil || !strings.Contains(r.out, tc.want) {
				t.Fatalf("err %v, output %q, want %q", r.err, r.out, tc.want)
			}
			got := &tokensv1alpha1.ApiToken{}
			if err := k8s.Get(context.Background(), key, got); err != nil {
				t.Fatal(err)
			}
			if v := got.Annotations[tc.kind.annotation]; v != "kubectl-apitoken-1795834800000" || got.Annotations["keep"] != "me" {
				t.Fatalf("annotations %v", got.Annotations)
			}
		})
	}
}
