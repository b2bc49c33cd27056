package backend_test

import (
	"context"
	"errors"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/conformance"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestTokenServiceTypeConformance runs the backend-type conformance cases
// against the Token Service type and a real tokenservice.
func TestTokenServiceTypeConformance(t *testing.T) {
	ts := framework.NewTokenService(t, adminKey, nil)
	catalog, err := ts.Admin.Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	conformance.RunBackendType(t, conformance.BackendTarget{
		Backend: ts.Admin,
		Accepts: func(ctx context.Context, sid string, secret backend.AuthToken) (bool, error) {
			err := ts.Admin.Verify(ctx, backend.Credentials{AccountSID: sid, AuthToken: secret}, "")
			if errors.Is(err, backend.ErrUnauthorized) {
				return false, nil
			}
			return err == nil, err
		},
		Scopes:  []string{catalog.Scopes[0].Name, catalog.Scopes[1].Name},
		Contact: catalog.Contacts[0].Email,
	})
}
