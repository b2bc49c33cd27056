package hydra

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/conformance"
	"github.com/apitoken-dev/apitoken-operator/test/framework/hydraserver"
)

// TestHydraTypeConformance runs the backend-type conformance cases (those its
// Capabilities allow) against the Hydra type and the real Hydra of TestMain.
func TestHydraTypeConformance(t *testing.T) {
	b, err := NewBackend(Options{AdminURL: adminURL, TokenURL: server.TokenURL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	conformance.RunBackendType(t, conformance.BackendTarget{
		Backend: b,
		Accepts: func(ctx context.Context, sid string, secret backend.AuthToken) (bool, error) {
			g, err := hydraserver.ClientCredentials(ctx, server.TokenURL, sid, secret.Reveal(), "")
			return g.Status == http.StatusOK, err
		},
		Scopes:  []string{"reports:read", "reports:write"},
		Contact: "owner@example.com",
	})
}
