// Package hydra is the client of an Ory Hydra v2 (tested against v2.3.0) admin
// and token endpoint, and the Hydra backend type (Backend, in backend.go): each
// token is an OAuth2 client that uses the client-credentials grant, and its auth
// token is the client secret. Hydra has no conditional reads, no catalog and
// never returns a secret, so Backend's Capabilities say so and the caller (the
// operator) chooses each client's ID and secret. It speaks the types of
// pkg/backend (backend.Token, backend.CreateRequest, backend.TokenPatch,
// backend.AuthToken) and its sentinel errors. docs/backends.md sets this mapping
// beside the Token Service's.
//
// # Mapping
//
//	backend.Token / CreateRequest   Hydra OAuth2 client
//	-----------------------------   -------------------------------------------------
//	SID                             client_id (chosen by the caller: the operator
//	                                uses the ApiToken's UID, then "<uid>-<n>")
//	auth token                      client_secret (chosen by the caller, see NewSecret;
//	                                Hydra stores a hash and never returns it on GET)
//	ExternalID                      owner
//	Name                            client_name
//	Description                     metadata.description
//	PrimaryContact                  contacts[0] and metadata.primaryContact
//	DeveloperEmails                 contacts[1:] (sorted, no duplicates)
//	Scopes                          scope: sorted, space-separated; an empty set is
//	                                stored as " " (see below)
//	APIVersion                      metadata.apiVersion (omitted when 0)
//	State Enabled                   grant_types ["client_credentials"]
//	State Disabled                  grant_types []
//	Generation                      metadata.generation: 1 at creation, then the value
//	                                each SetSecret writes
//	CreatedAt, UpdatedAt            created_at, updated_at
//	ETag                            computed here, see below
//
// Contacts: contacts[0] is read as the primary contact only when it equals
// metadata.primaryContact; otherwise (a client made by hand) every contact is a
// developer e-mail and the primary contact is metadata.primaryContact, if any.
//
// Scopes: Hydra replaces an empty scope with its default client scope ("offline_access
// offline openid" unless configured otherwise), which would let the client ask for
// those scopes. A single space is stored verbatim and holds no scope, so an empty set
// is written as " " and the token endpoint refuses every scope (invalid_scope).
//
// State: Hydra reads grant_types [] as the OIDC default ["authorization_code"]; with
// no redirect URI registered that flow cannot complete, and the token endpoint
// refuses the client-credentials grant with 400 unauthorized_client. Tokens issued
// before a client is disabled stay valid until they expire, so Disable (and an
// Update to Disabled) revokes them.
//
// ETag: Hydra sends none. Token.ETag is a strong entity tag computed locally: the
// quoted hex SHA-256 of the JSON encoding of the mapped Token (without the ETag).
// Hydra bumps updated_at on every write, so any change of the client gives another
// ETag, and two reads of an unchanged client give the same one: the operator can
// compare versions locally, although Hydra cannot answer a conditional request.
// Writes here are not conditional either: Hydra's JSON Patch refuses the "test"
// operation (HTTP 500), so Update reads, decides and patches without a guard.
//
// # Errors
//
// Failures are *backend.APIError (built by backend.NewAPIError, so that the
// sentinel follows the HTTP status: 400 ErrInvalid, 401/403 ErrUnauthorized,
// 404 ErrNotFound, 409 ErrConflict, 429 ErrRateLimited, 5xx ErrUnavailable), with
// Hydra's OAuth2 error code (e.g. "invalid_scope") in Type; or, for a transport
// failure or a decision made here, an error that wraps a sentinel. Hydra's texts are
// never printed (its create and patch answers echo the client secret), and no error
// or log holds a secret.
//
// Calls that fail with a network error, 429, 500, 502, 503 or 504 are retried
// (at most 3 attempts, backoff or a Retry-After up to 2 s), and so is the 400
// Hydra answers when its database aborted the request for a concurrent update
// (ErrUnavailable, not ErrInvalid: nothing was written). Every call is safe to
// repeat: see each method.
package hydra

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Defaults and limits.
const (
	// DefaultTimeout bounds each HTTP attempt when Options.Timeout is 0.
	DefaultTimeout = 10 * time.Second

	maxAttempts      = 3
	baseBackoff      = 100 * time.Millisecond
	maxRetryWait     = 2 * time.Second
	maxResponseBytes = 16 << 20
	defaultPageSize  = 250
	maxPages         = 1000

	grantClientCredentials = "client_credentials"
	// emptyScope is what an empty scope set is stored as; see the package doc.
	emptyScope = " "
)

// Options configure a Client.
type Options struct {
	// AdminURL is the base URL of Hydra's admin API, e.g. http://hydra-admin:4445.
	AdminURL string
	// TokenURL is Hydra's public token endpoint, e.g. https://auth.example.com/oauth2/token.
	TokenURL string
	// HTTPClient replaces the default HTTP client (which follows no redirects).
	HTTPClient *http.Client
	// SecretHTTPClient carries the calls whose request or answer holds a client
	// secret, over connections of its own that do not idle with the secret in
	// their buffers (backend.NewSecretHTTPClient). Unset, such calls go over
	// HTTPClient on a connection closed after each.
	SecretHTTPClient *http.Client
	// Timeout bounds each HTTP attempt. Default DefaultTimeout.
	Timeout time.Duration
	// AdminToken, when set, is sent as a bearer token on admin API calls (for an
	// admin API behind an authenticating proxy; Hydra's own has no authentication).
	AdminToken string
	// QPS and Burst bound the calls this client makes; QPS 0 means no limit.
	QPS   float64
	Burst int
	// Observe, when set, is told about every HTTP attempt: the call name, the
	// status code (0 for a network error) and its duration.
	Observe func(call string, code int, duration time.Duration)
}

// Client talks to one Hydra. It is safe for concurrent use.
type Client struct {
	admin      *url.URL
	tokenURL   *url.URL
	http       *http.Client
	secretHTTP *http.Client // nil: calls that carry a secret close their connection
	timeout    time.Duration
	pageSize   int
	adminToken string
	limiter    *rate.Limiter
	observe    func(string, int, time.Duration)
}

// New validates the options and builds a Client. Both URLs must be absolute
// http(s) URLs; a bad one is a backend.ErrInvalidConfig.
func New(o Options) (*Client, error) {
	admin, err := parseBase("AdminURL", strings.TrimSuffix(o.AdminURL, "/"))
	if err != nil {
		return nil, err
	}
	tokenURL, err := parseBase("TokenURL", o.TokenURL)
	if err != nil {
		return nil, err
	}
	hc := o.HTTPClient
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		hc = &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	c := &Client{admin: admin, tokenURL: tokenURL, http: hc, secretHTTP: o.SecretHTTPClient, timeout: o.Timeout, pageSize: defaultPageSize,
		adminToken: o.AdminToken, limiter: rate.NewLimiter(rate.Inf, 0), observe: o.Observe}
	if o.QPS > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(o.QPS), max(1, o.Burst))
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

func parseBase(name, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: hydra %s %q must be an absolute http(s) URL without query", backend.ErrInvalidConfig, name, raw)
	}
	return u, nil
}

// TokenURL returns the token endpoint, which the operator writes into the Secret.
func (c *Client) TokenURL() string { return c.tokenURL.String() }

// clientIDPattern is what every method accepts (and what a Kubernetes UID, with
// "-<n>", matches): Hydra itself takes any string, but a client ID goes into URL
// paths.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_]{0,254}$`)

// NewSecret returns a new client secret: 32 random bytes, base64url without padding.
func NewSecret() (backend.AuthToken, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("hydra: new secret: %w", err)
	}
	return backend.AuthToken(base64.RawURLEncoding.EncodeToString(b)), nil
}
