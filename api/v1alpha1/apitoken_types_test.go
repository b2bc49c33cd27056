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

package v1alpha1

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestSecretTemplateKeyNames(t *testing.T) {
	cases := map[string]struct {
		template           SecretTemplate
		wantSID, wantToken string
	}{
		"unset: the defaults":             {SecretTemplate{}, DefaultAccountSIDKey, DefaultAuthTokenKey},
		"Opaque with the defaults":        {SecretTemplate{Type: corev1.SecretTypeOpaque}, "accountSid", "authToken"},
		"Opaque with its own keys":        {SecretTemplate{Type: corev1.SecretTypeOpaque, AccountSIDKey: "sid", AuthTokenKey: "token"}, "sid", "token"},
		"only the SID key set":            {SecretTemplate{AccountSIDKey: "sid"}, "sid", DefaultAuthTokenKey},
		"only the token key set":          {SecretTemplate{AuthTokenKey: "token"}, DefaultAccountSIDKey, "token"},
		"basic-auth":                      {SecretTemplate{Type: corev1.SecretTypeBasicAuth}, "username", "password"},
		"basic-auth ignores its own keys": {SecretTemplate{Type: corev1.SecretTypeBasicAuth, AccountSIDKey: "sid", AuthTokenKey: "token"}, "username", "password"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			sid, token := tc.template.KeyNames()
			if sid != tc.wantSID || token != tc.wantToken {
				t.Errorf("KeyNames() = %q, %q; want %q, %q", sid, token, tc.wantSID, tc.wantToken)
			}
		})
	}
}
