package controllers

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

func TestClientFailureMessage(t *testing.T) {
	_, invalidURL := backend.New(backend.Options{URL: "ftp://tokens.example.com"})
	tests := map[string]struct {
		err  error
		want string
	}{
		"the user must fix the credentials Secret": {
			err:  stalled(tokensv1alpha1.ReasonCredentialsInvalid, "credentials Secret %s/%s has no key %q", "ops", "admin", "apiKey"),
			want: `credentials Secret ops/admin has no key "apiKey"`,
		},
		"the user must fix the spec": {
			err:  invalidURL,
			want: `invalid backend configuration: url "ftp://tokens.example.com" must be an absolute http(s) URL`,
		},
		"reading the credentials failed": {
			err: fmt.Errorf("read credentials Secret ops/admin: %w",
				apierrors.NewServerTimeout(schema.GroupResource{Resource: "secrets"}, "get", 1)),
			want: "The backend client could not be set up: the Kubernetes API answered ServerTimeout",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, clientFailureMessage(tc.err)); diff != "" {
				t.Errorf("clientFailureMessage (-want +got):\n%s", diff)
			}
		})
	}
}
