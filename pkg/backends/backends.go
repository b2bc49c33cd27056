// Package backends is the one place that knows every backend type by name: it
// builds the backend.Backend of a TokenBackend's type from its options. The
// controller and the kubectl plugin build backends here and nowhere else; past
// this point they see only backend.Backend and its Capabilities.
// docs/backends.md explains how to add a type.
package backends

import (
	"fmt"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend/hydra"
)

// Type names, as TokenBackend.spec.type spells them.
const (
	TokenService = "TokenService"
	Hydra        = "Hydra"
)

// New builds the backend of o.Type (empty: TokenService).
func New(o backend.Options) (backend.Backend, error) {
	switch o.Type {
	case TokenService, "":
		return backend.New(o)
	case Hydra:
		return newHydra(o)
	}
	return nil, fmt.Errorf("%w: unknown backend type %q", backend.ErrInvalidConfig, o.Type)
}

// newHydra maps the common options onto Hydra's: the URL is the admin API, the
// admin key (optional) its bearer token; the token endpoint must be reachable
// under the same transport rules.
func newHydra(o backend.Options) (backend.Backend, error) {
	if err := backend.CheckTransport(o.TokenURL, o.AllowInsecureHTTP); err != nil {
		return nil, err
	}
	hc, err := backend.NewHTTPClient(o)
	if err != nil {
		return nil, err
	}
	secretHC, err := backend.NewSecretHTTPClient(o)
	if err != nil {
		return nil, err
	}
	return hydra.NewBackend(hydra.Options{
		AdminURL: o.URL, TokenURL: o.TokenURL, AdminToken: o.AdminKey, HTTPClient: hc, SecretHTTPClient: secretHC,
		Timeout: o.Timeout, QPS: o.QPS, Burst: o.Burst, Observe: o.Observe,
	})
}
