package hydra

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// createBody is the POST /admin/clients body.
type createBody struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret"`
	ClientName              string   `json:"client_name"`
	Owner                   string   `json:"owner"`
	Contacts                []string `json:"contacts"`
	Scope                   string   `json:"scope"`
	GrantTypes              []string `json:"grant_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Metadata                meta     `json:"metadata"`
}

// CreateClient creates the client clientID with secret, owned by req.ExternalID,
// at generation 1. Hydra has no idempotency key: the client ID is the key. When
// the client exists already (HTTP 409) and has the same owner, CreateClient
// returns it as it is with existed true (a repeat after a crash or a lost
// answer); it does not compare or set the secret, which SecretAccepted can
// check. An existing client of another owner is the 409 (ErrConflict).
func (c *Client) CreateClient(ctx context.Context, clientID string, req backend.CreateRequest, secret backend.AuthToken) (tok *backend.Token, existed bool, err error) {
	const call = "hydra create client"
	if err := checkClientID(call, clientID); err != nil {
		return nil, false, err
	}
	if err := checkSecret(call, secret); err != nil {
		return nil, false, err
	}
	scope, err := encodeScope(req.Scopes)
	if err != nil {
		return nil, false, err
	}
	grants, err := grantTypesFor(req.State)
	if err != nil {
		return nil, false, err
	}
	m := meta{Description: req.Description, PrimaryContact: req.PrimaryContact, Generation: 1}
	if req.APIVersion != nil {
		m.APIVersion = *req.APIVersion
	}
	payload, err := json.Marshal(createBody{
		ClientID:                clientID,
		ClientSecret:            secret.Reveal(),
		ClientName:              req.Name,
		Owner:                   req.ExternalID,
		Contacts:                composeContacts(req.PrimaryContact, req.DeveloperEmails),
		Scope:                   scope,
		GrantTypes:              grants,
		TokenEndpointAuthMethod: "client_secret_basic",
		Metadata:                m,
	})
	if err != nil {
		return nil, false, fmt.Errorf("%s: encode: %w", call, err)
	}
	body, err := c.do(ctx, request{call: call, method: http.MethodPost, url: c.adminURL("/admin/clients", nil), body: payload, carriesSecret: true})
	if errors.Is(err, backend.ErrConflict) {
		existing, getErr := c.GetClient(ctx, clientID)
		if getErr != nil {
			return nil, false, getErr
		}
		if existing.ExternalID != req.ExternalID {
			return nil, false, err
		}
		return existing, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	tok, err = decodeClient(call, body)
	return tok, false, err
}

// GetClient returns the client as a Token. An unknown client is ErrNotFound.
func (c *Client) GetClient(ctx context.Context, clientID string) (*backend.Token, error) {
	const call = "hydra get client"
	if err := checkClientID(call, clientID); err != nil {
		return nil, err
	}
	hc, err := c.getRaw(ctx, call, clientID)
	if err != nil {
		return nil, err
	}
	return toToken(hc), nil
}

func (c *Client) getRaw(ctx context.Context, call, clientID string) (*hydraClient, error) {
	body, err := c.do(ctx, request{call: call, method: http.MethodGet, url: c.adminURL(clientPath(clientID), nil)})
	if err != nil {
		return nil, err
	}
	var hc hydraClient
	if err := json.Unmarshal(body, &hc); err != nil || hc.ClientID == "" {
		return nil, malformed(call)
	}
	return &hc, nil
}

// FindByOwner returns the clients whose owner is owner, following Hydra's pages.
// An empty owner is refused (ErrInvalid): Hydra would list every client. Items
// with another owner are dropped whatever Hydra answers.
func (c *Client) FindByOwner(ctx context.Context, owner string) ([]backend.Token, error) {
	const call = "hydra list clients"
	if owner == "" {
		return nil, fmt.Errorf("%s: %w: an empty owner", call, backend.ErrInvalid)
	}
	return c.listClients(ctx, call, owner)
}

// FindUnclaimed returns the clients without an owner: those made by hand, which
// kubectl apitoken import --unmanaged offers for adoption. It reads every page
// of every client.
func (c *Client) FindUnclaimed(ctx context.Context) ([]backend.Token, error) {
	return c.listClients(ctx, "hydra list clients", "")
}

// listClients lists the clients whose owner is owner (Hydra filters by a
// non-empty owner; an empty one lists every client, filtered here).
func (c *Client) listClients(ctx context.Context, call, owner string) ([]backend.Token, error) {
	out := []backend.Token{}
	q := url.Values{"page_size": {strconv.Itoa(c.pageSize)}}
	if owner != "" {
		q.Set("owner", owner)
	}
	for range maxPages {
		body, header, err := c.doHeader(ctx, request{call: call, method: http.MethodGet, url: c.adminURL("/admin/clients", q)})
		if err != nil {
			return nil, err
		}
		var page []hydraClient
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, malformed(call)
		}
		for i := range page {
			if page[i].Owner == owner && page[i].ClientID != "" {
				out = append(out, *toToken(&page[i]))
			}
		}
		next := nextPageToken(header)
		if len(page) == 0 || next == "" || next == q.Get("page_token") {
			return out, nil
		}
		q.Set("page_token", next)
	}
	return nil, fmt.Errorf("%s: %w: more than %d pages", call, backend.ErrUnavailable, maxPages)
}

// nextPageToken reads the page_token of the Link header's rel="next" target. Only
// the token is used: the link's path ignores a prefix in AdminURL.
func nextPageToken(h http.Header) string {
	for _, v := range h.Values("Link") {
		for link := range strings.SplitSeq(v, ",") {
			target, params, ok := strings.Cut(link, ";")
			if !ok || !strings.Contains(params, `rel="next"`) {
				continue
			}
			u, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
			if err != nil {
				continue
			}
			return u.Query().Get("page_token")
		}
	}
	return ""
}

// patchOp is one JSON Patch (RFC 6902) operation. Hydra accepts add, remove and
// replace only.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// UpdateClient applies the non-nil fields of patch with one JSON Patch, after a read of
// the client: only fields that differ are sent, and when none differs there is no
// write (the ETag stays). ExternalID sets the owner when the client has none or the
// same one; another owner is ErrConflict. PrimaryContact and DeveloperEmails
// rewrite contacts from the read client, so a concurrent change of contacts may be
// lost: Hydra has no conditional write. An Update to Disabled revokes the client's
// access tokens, even when it was disabled already, so that a repeat after a crash
// between the two steps completes. Safe to repeat.
func (c *Client) UpdateClient(ctx context.Context, clientID string, patch backend.TokenPatch) (*backend.Token, error) {
	const call = "hydra update client"
	if err := checkClientID(call, clientID); err != nil {
		return nil, err
	}
	hc, err := c.getRaw(ctx, call, clientID)
	if err != nil {
		return nil, err
	}
	cur := toToken(hc)
	_, metaIsObject := parseMeta(hc.Metadata)
	var ops []patchOp
	metaOps := map[string]any{}

	if p := patch.ExternalID; p != nil && *p != cur.ExternalID {
		if cur.ExternalID != "" {
			return nil, fmt.Errorf("%s: %w: the client has another owner", call, backend.ErrConflict)
		}
		ops = append(ops, patchOp{"replace", "/owner", *p})
	}
	if p := patch.Name; p != nil && *p != cur.Name {
		ops = append(ops, patchOp{"replace", "/client_name", *p})
	}
	if p := patch.Description; p != nil && *p != cur.Description {
		metaOps[metaDescription] = *p
	}
	if p := patch.APIVersion; p != nil && *p != cur.APIVersion {
		metaOps[metaAPIVersion] = *p
	}
	if patch.PrimaryContact != nil || patch.DeveloperEmails != nil {
		primary, devs := cur.PrimaryContact, cur.DeveloperEmails
		if p := patch.PrimaryContact; p != nil {
			primary = *p
			if primary != cur.PrimaryContact {
				metaOps[metaPrimaryContact] = primary
			}
		}
		if p := patch.DeveloperEmails; p != nil {
			devs = *p
		}
		if want := composeContacts(primary, devs); !slices.Equal(want, hc.Contacts) {
			ops = append(ops, patchOp{"replace", "/contacts", want})
		}
	}
	if p := patch.Scopes; p != nil {
		scope, err := encodeScope(*p)
		if err != nil {
			return nil, err
		}
		if scope != hc.Scope {
			ops = append(ops, patchOp{"replace", "/scope", scope})
		}
	}
	if p := patch.State; p != nil {
		grants, err := grantTypesFor(*p)
		if err != nil {
			return nil, err
		}
		if *p != cur.State {
			ops = append(ops, patchOp{"replace", "/grant_types", grants})
		}
	}
	ops = append(ops, metadataOps(metaIsObject, metaOps)...)

	tok := cur
	if len(ops) > 0 {
		if tok, err = c.patch(ctx, call, clientID, ops, false); err != nil {
			return nil, err
		}
	}
	if patch.State != nil && *patch.State == backend.StateDisabled {
		if err := c.RevokeTokens(ctx, clientID); err != nil {
			return nil, err
		}
	}
	return tok, nil
}

// metadataOps sets metadata keys: one add per key into an object (keeping keys
// others wrote), or the whole object when metadata is not one (then it held none
// of the operator's keys: parseMeta reads nothing from it).
func metadataOps(isObject bool, set map[string]any) []patchOp {
	if len(set) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(set))
	if isObject {
		ops := make([]patchOp, 0, len(keys))
		for _, k := range keys {
			ops = append(ops, patchOp{"add", "/metadata/" + k, set[k]})
		}
		return ops
	}
	return []patchOp{{"add", "/metadata", set}}
}

func (c *Client) patch(ctx context.Context, call, clientID string, ops []patchOp, carriesSecret bool) (*backend.Token, error) {
	payload, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("%s: encode: %w", call, err)
	}
	body, err := c.do(ctx, request{
		call: call, method: http.MethodPatch, url: c.adminURL(clientPath(clientID), nil),
		body: payload, contentType: "application/json-patch+json", carriesSecret: carriesSecret,
	})
	if err != nil {
		return nil, err
	}
	return decodeClient(call, body)
}

// Disable sets the client's grant_types to [] (the token endpoint then refuses it)
// and revokes its access tokens. Safe to repeat.
func (c *Client) Disable(ctx context.Context, clientID string) (*backend.Token, error) {
	s := backend.StateDisabled
	return c.UpdateClient(ctx, clientID, backend.TokenPatch{State: &s})
}

// Enable sets the client's grant_types to ["client_credentials"]; its secret works
// again. Safe to repeat.
func (c *Client) Enable(ctx context.Context, clientID string) (*backend.Token, error) {
	s := backend.StateEnabled
	return c.UpdateClient(ctx, clientID, backend.TokenPatch{State: &s})
}

// SetSecret replaces the client's secret and sets metadata.generation to
// generation (the caller passes the new one, the current generation + 1, so that a
// repeat writes the same state), then revokes the client's access tokens. Hydra
// refuses the old secret at once and keeps the client ID. An unknown client is
// ErrNotFound. Safe to repeat with the same arguments.
func (c *Client) SetSecret(ctx context.Context, clientID string, secret backend.AuthToken, generation int64) error {
	const call = "hydra set client secret"
	if err := checkClientID(call, clientID); err != nil {
		return err
	}
	if err := checkSecret(call, secret); err != nil {
		return err
	}
	if generation < 1 {
		return fmt.Errorf("%s: %w: generation %d is below 1", call, backend.ErrInvalid, generation)
	}
	ops := []patchOp{
		{"replace", "/client_secret", secret.Reveal()},
		{"add", "/metadata/" + metaGeneration, generation},
	}
	if _, err := c.patch(ctx, call, clientID, ops, true); err != nil {
		return err
	}
	return c.RevokeTokens(ctx, clientID)
}

// RevokeTokens revokes every access token issued to the client
// (DELETE /admin/oauth2/tokens?client_id=...). Hydra answers 204 for an unknown
// client too. Safe to repeat.
func (c *Client) RevokeTokens(ctx context.Context, clientID string) error {
	const call = "hydra revoke client tokens"
	if err := checkClientID(call, clientID); err != nil {
		return err
	}
	_, err := c.do(ctx, request{call: call, method: http.MethodDelete, url: c.adminURL("/admin/oauth2/tokens", url.Values{"client_id": {clientID}})})
	return err
}

// DeleteClient deletes the client and then revokes its access tokens (which Hydra also
// stops honouring with the client). An unknown client is ErrNotFound; the tokens
// are revoked in that case too, so that a repeat after a crash completes.
func (c *Client) DeleteClient(ctx context.Context, clientID string) error {
	const call = "hydra delete client"
	if err := checkClientID(call, clientID); err != nil {
		return err
	}
	_, err := c.do(ctx, request{call: call, method: http.MethodDelete, url: c.adminURL(clientPath(clientID), nil)})
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	if revokeErr := c.RevokeTokens(ctx, clientID); revokeErr != nil {
		return revokeErr
	}
	return err
}

// SecretAccepted asks the token endpoint whether secret is the client's current
// secret, with the client-credentials grant and no scope (client_secret_basic):
//   - 200: true; the access token it issued is revoked at once (best effort, at the
//     revocation endpoint next to the token endpoint, RFC 7009).
//   - 400 unauthorized_client: true. Hydra authenticates the client before it checks
//     the grant, so this is a disabled client with the right secret.
//   - 401 invalid_client: false. Hydra answers the same for an unknown client.
//   - anything else: an error.
//
// After a crash the operator uses it to tell which written-ahead secret is live.
func (c *Client) SecretAccepted(ctx context.Context, clientID string, secret backend.AuthToken) (bool, error) {
	const call = "hydra check client secret"
	if err := checkClientID(call, clientID); err != nil {
		return false, err
	}
	body, err := c.do(ctx, request{
		call: call, method: http.MethodPost, url: c.tokenURL.String(),
		body:        []byte(url.Values{"grant_type": {grantClientCredentials}}.Encode()),
		contentType: "application/x-www-form-urlencoded",
		basic:       basicAuth(clientID, secret), carriesSecret: true,
	})
	if err == nil {
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(body, &tok) == nil && tok.AccessToken != "" {
			c.revokeAccessToken(ctx, clientID, secret, tok.AccessToken)
		}
		return true, nil
	}
	if e, ok := errors.AsType[*backend.APIError](err); ok {
		switch {
		case e.StatusCode == http.StatusUnauthorized && e.Type == "invalid_client":
			return false, nil
		case e.StatusCode == http.StatusBadRequest && e.Type == "unauthorized_client":
			return true, nil
		}
	}
	return false, err
}

// revokeAccessToken revokes one access token at the public revocation endpoint,
// when the token URL ends in /token (Hydra's layout). Failures are ignored: the
// token was never handed out and expires on its own.
func (c *Client) revokeAccessToken(ctx context.Context, clientID string, secret backend.AuthToken, accessToken string) {
	if !strings.HasSuffix(c.tokenURL.Path, "/token") {
		return
	}
	u := *c.tokenURL
	u.Path = strings.TrimSuffix(u.Path, "/token") + "/revoke"
	u.RawPath = ""
	_, _ = c.do(ctx, request{
		call: "hydra revoke probe token", method: http.MethodPost, url: u.String(),
		body:        []byte(url.Values{"token": {accessToken}, "token_type_hint": {"access_token"}}.Encode()),
		contentType: "application/x-www-form-urlencoded",
		basic:       basicAuth(clientID, secret), carriesSecret: true, noRetry: true,
	})
}

// basicAuth is the Authorization header of client_secret_basic: both parts are
// form-encoded first (RFC 6749, section 2.3.1), which Hydra requires.
func basicAuth(clientID string, secret backend.AuthToken) string {
	creds := url.QueryEscape(clientID) + ":" + url.QueryEscape(secret.Reveal())
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(creds))
}
