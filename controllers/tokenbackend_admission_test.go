package controllers

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// The API server checks each backend type's settings at admission.
func TestTokenBackendTypeSettingsAreCheckedAtAdmission(t *testing.T) {
	hydraSpec := func() tokensv1alpha1.TokenBackendSpec {
		return tokensv1alpha1.TokenBackendSpec{
			Type: tokensv1alpha1.BackendHydra, URL: "http://127.0.0.1:4445",
			Hydra: &tokensv1alpha1.HydraSettings{TokenURL: "http://127.0.0.1:4444/oauth2/token"},
		}
	}
	for _, tc := range []struct {
		name string
		spec func() tokensv1alpha1.TokenBackendSpec
		want string // empty: accepted
	}{
		{"a Hydra backend needs no admin key", hydraSpec, ""},
		{"a Token Service needs its admin key", func() tokensv1alpha1.TokenBackendSpec {
			return tokensv1alpha1.TokenBackendSpec{URL: "http://127.0.0.1:8080"}
		}, "credentialsSecretRef is required"},
		{"Hydra needs its settings", func() tokensv1alpha1.TokenBackendSpec {
			s := hydraSpec()
			s.Hydra = nil
			return s
		}, "hydra is required"},
		{"Hydra settings on a Token Service", func() tokensv1alpha1.TokenBackendSpec {
			s := hydraSpec()
			s.Type = tokensv1alpha1.BackendTokenService
			s.CredentialsSecretRef = &tokensv1alpha1.SecretKeyReference{Namespace: operatorNamespace, Name: "k"}
			return s
		}, "only for it"},
		{"an unknown type", func() tokensv1alpha1.TokenBackendSpec {
			s := hydraSpec()
			s.Type = "Keycloak"
			return s
		}, "Unsupported value"},
		{"a grant type other than client_credentials", func() tokensv1alpha1.TokenBackendSpec {
			s := hydraSpec()
			s.Hydra.GrantTypes = []string{"authorization_code"}
			return s
		}, "Unsupported value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{GenerateName: "admission-"}, Spec: tc.spec()}
			err := k8s.Create(t.Context(), tb, &client.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an Invalid error with %q", err, tc.want)
			}
		})
	}

	// The type of a TokenBackend cannot change: its tokens mean nothing to another.
	tb := &tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{GenerateName: "admission-"}, Spec: hydraSpec()}
	if err := k8s.Create(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), tb) })
	tb.Spec.Type, tb.Spec.Hydra = tokensv1alpha1.BackendTokenService, nil
	tb.Spec.CredentialsSecretRef = &tokensv1alpha1.SecretKeyReference{Namespace: operatorNamespace, Name: "k"}
	if err := k8s.Update(t.Context(), tb); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "cannot be changed") {
		t.Errorf("changing the type: %v, want refused", err)
	}
}
