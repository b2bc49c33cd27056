package hydra

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Backend is the Hydra backend type: backend.Backend over a Client. Hydra never
// returns a secret and has no catalog, no idempotency keys and no conditional
// requests, so its Capabilities say so and the caller (the operator) chooses
// each client's ID and secret; the ID and the secret stand in for the
// idempotency key.
type Backend struct {
	*Client
}

var _ backend.Backend = Backend{}

// NewBackend builds the Hydra backend type from its options.
func NewBackend(o Options) (Backend, error) {
	c, err := New(o)
	if err != nil {
		return Backend{}, err
	}
	return Backend{Client: c}, nil
}

// Capabilities implements backend.Backend.
func (Backend) Capabilities() backend.Capabilities {
	return backend.Capabilities{InPlaceReset: true, Disable: true, Claim: true}
}

// Catalog implements backend.Backend. Hydra has none: it lists one client to
// check that the admin API answers (and accepts the admin token), and returns an
// empty catalog.
func (b Backend) Catalog(ctx context.Context) (*backend.Catalog, error) {
	const call = "hydra list clients"
	_, err := b.do(ctx, request{call: call, method: http.MethodGet, url: b.adminURL("/admin/clients", url.Values{"page_size": {"1"}})})
	if err != nil {
		return nil, err
	}
	return &backend.Catalog{APIVersions: []int{}, Scopes: []backend.Scope{}, Contacts: []backend.Contact{}}, nil
}

// Create implements backend.Backend: the client req.SID with secret
// req.AuthToken. A repeat (the client exists with the same owner) answers the
// client as it is when the secret is live, and sets the secret first when it is
// not (an earlier attempt wrote another one, or the client was changed by hand):
// either way the result is a client that accepts req.AuthToken.
func (b Backend) Create(ctx context.Context, _ string, req backend.CreateRequest) (*backend.Token, backend.Credentials, error) {
	tok, existed, err := b.CreateClient(ctx, req.SID, req, req.AuthToken)
	if err != nil {
		return nil, backend.Credentials{}, err
	}
	if existed {
		if tok, err = b.ensureSecret(ctx, tok, req.AuthToken); err != nil {
			return nil, backend.Credentials{}, err
		}
	}
	return tok, backend.Credentials{AccountSID: tok.SID, AuthToken: req.AuthToken, Generation: tok.Generation}, nil
}

// ensureSecret makes secret the client's live one, unless it is already: then
// nothing is written and the generation stays.
func (b Backend) ensureSecret(ctx context.Context, tok *backend.Token, secret backend.AuthToken) (*backend.Token, error) {
	live, err := b.SecretAccepted(ctx, tok.SID, secret)
	if err != nil || live {
		return tok, err
	}
	next := *tok
	next.Generation = tok.Generation + 1
	if err := b.SetSecret(ctx, tok.SID, secret, next.Generation); err != nil {
		return nil, err
	}
	next.ETag = "" // the client changed: the next read reads it whole
	return &next, nil
}

// FindByExternalID implements backend.Backend: the clients with that owner.
func (b Backend) FindByExternalID(ctx context.Context, externalID string) ([]backend.Token, error) {
	return b.FindByOwner(ctx, externalID)
}

// Get implements backend.Backend. Hydra cannot answer a conditional request: the
// client is read whole and its computed ETag compared here.
func (b Backend) Get(ctx context.Context, sid, etag string) (*backend.Token, bool, error) {
	tok, err := b.GetClient(ctx, sid)
	if err != nil {
		return nil, false, err
	}
	if etag != "" && tok.ETag == etag {
		return nil, false, nil
	}
	return tok, true, nil
}

// Update implements backend.Backend. With an etag, the client is read first and a
// changed one is ErrPreconditionFailed; Hydra's writes themselves cannot be made
// conditional (see the package doc), so a change made in Hydra between the read
// and the write is overwritten, as any drift is.
func (b Backend) Update(ctx context.Context, sid, etag string, patch backend.TokenPatch) (*backend.Token, error) {
	if etag != "" {
		cur, err := b.GetClient(ctx, sid)
		if err != nil {
			return nil, err
		}
		if cur.ETag != etag {
			return nil, fmt.Errorf("hydra update client: %w: the client changed since it was read", backend.ErrPreconditionFailed)
		}
	}
	return b.UpdateClient(ctx, sid, patch)
}

// Credentials implements backend.Backend: Hydra never returns a secret.
func (Backend) Credentials(context.Context, string) (backend.Credentials, error) {
	return backend.Credentials{}, fmt.Errorf("hydra credentials: %w: Hydra never returns a client secret", backend.ErrUnsupported)
}

// Reset implements backend.Backend: next becomes the client's secret and its
// access tokens are revoked. A repeat (next already live) changes nothing and
// answers the same generation.
func (b Backend) Reset(ctx context.Context, sid, _ string, next backend.AuthToken) (backend.Credentials, error) {
	if err := checkSecret("hydra reset client", next); err != nil {
		return backend.Credentials{}, err
	}
	tok, err := b.GetClient(ctx, sid)
	if err != nil {
		return backend.Credentials{}, err
	}
	if tok, err = b.ensureSecret(ctx, tok, next); err != nil {
		return backend.Credentials{}, err
	}
	return backend.Credentials{AccountSID: sid, AuthToken: next, Generation: tok.Generation}, nil
}

// Delete implements backend.Backend.
func (b Backend) Delete(ctx context.Context, sid string) error {
	return b.DeleteClient(ctx, sid)
}

// SecretAccepted implements backend.Backend at Hydra's token endpoint.
func (b Backend) SecretAccepted(ctx context.Context, sid string, secret backend.AuthToken) (bool, error) {
	if len(secret.Reveal()) < 6 {
		return false, nil // Hydra accepts no shorter secret
	}
	return b.Client.SecretAccepted(ctx, sid, secret)
}
