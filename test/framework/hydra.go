package framework

import (
	"context"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend/hydra"
	"github.com/apitoken-dev/apitoken-operator/test/framework/hydraserver"
)

// Hydra is a real Ory Hydra (test/framework/hydraserver) with the test's own
// view of it as the operator's backend type.
type Hydra struct {
	*hydraserver.Server
	// Admin is the test's own client of Hydra's admin API.
	Admin hydra.Backend
}

// StartHydra starts Hydra with dsn ("memory", or a sqlite DSN that keeps its
// clients across restarts). repoRoot is the repository, relative to the
// caller's package directory (for hack/hydra-binary.sh).
func StartHydra(repoRoot, dsn string) (*Hydra, error) {
	bin, err := hydraserver.Binary(repoRoot)
	if err != nil {
		return nil, err
	}
	s, err := hydraserver.Start(bin, dsn)
	if err != nil {
		return nil, err
	}
	admin, err := hydra.NewBackend(hydra.Options{AdminURL: s.AdminURL, TokenURL: s.TokenURL, Timeout: 5 * time.Second})
	if err != nil {
		s.Stop()
		return nil, err
	}
	return &Hydra{Server: s, Admin: admin}, nil
}

// NewHydra starts an in-memory Hydra for one test and stops it at its end.
func NewHydra(t testing.TB, repoRoot string) *Hydra {
	t.Helper()
	h, err := StartHydra(repoRoot, "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Hydra's log goes with it (Stop): a failed test shows its end, where
		// the cause of an answer 500 is (LOG_LEVEL=warn: no request bodies).
		if t.Failed() {
			t.Logf("Hydra's log, its last %d lines:\n%s", hydraLogTail, Tail(h.Log(), hydraLogTail))
		}
		h.Stop()
	})
	return h
}

// hydraLogTail is how many lines of Hydra's log a failed test shows.
const hydraLogTail = 40

// Accepts reports whether the token endpoint grants clientID with secret an
// access token (for scope, when set), as a consumer of the Secret would ask.
func (h *Hydra) Accepts(ctx context.Context, clientID string, secret backend.AuthToken, scope string) (bool, error) {
	g, err := hydraserver.ClientCredentials(ctx, h.TokenURL, clientID, secret.Reveal(), scope)
	return g.Status == http.StatusOK, err
}

// HydraBackendFor is a TokenBackend of type Hydra for a test Hydra: its admin
// API (which needs no key here), its token endpoint, no client-side limit worth
// the name, and the given resync.
func HydraBackendFor(name string, h *Hydra, resync time.Duration) *tokensv1alpha1.TokenBackend {
	return &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1alpha1.TokenBackendSpec{
			Type: tokensv1alpha1.BackendHydra, URL: h.AdminURL,
			Hydra:          &tokensv1alpha1.HydraSettings{TokenURL: h.TokenURL},
			RateLimit:      tokensv1alpha1.RateLimit{QPS: 1000, Burst: 1000},
			ResyncInterval: &metav1.Duration{Duration: resync},
		},
	}
}
