package backend

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 4
	// DefaultMaxRetryAfterWait is the longest Retry-After a call waits out
	// in-process; a longer one fails the call with ErrRateLimited at once, so that
	// a throttling backend never holds a caller's worker.
	DefaultMaxRetryAfterWait = 3 * time.Second
	defaultBackoff           = 200 * time.Millisecond
	maxBackoff               = 5 * time.Second
	maxResponseBytes         = 16 << 20
)

// ErrInvalidConfig is returned by New for options that cannot work.
var ErrInvalidConfig = errors.New("invalid backend configuration")

// Options configure a Client.
type Options struct {
	// Type is the backend type (pkg/backends builds each): "TokenService" (or
	// empty) for this package's Client.
	Type string
	// URL is the base URL of the Token Service, e.g. https://tokens.example.com,
	// or of the type's management API.
	URL string
	// TokenURL is the OAuth2 token endpoint of a type that has one (Hydra).
	TokenURL string
	// AdminKey authorises management calls.
	AdminKey string
	// CABundle holds PEM certificates to trust instead of the system roots.
	CABundle []byte
	// AllowInsecureHTTP permits an http:// URL to a host that is not loopback
	// (127.0.0.0/8, ::1, localhost); without it New refuses such a URL.
	AllowInsecureHTTP bool
	// QPS and Burst bound the calls this client makes; QPS 0 means no limit.
	QPS   float64
	Burst int
	// Timeout bounds each HTTP attempt. Default DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call. Default DefaultMaxAttempts.
	MaxAttempts int
	// MaxRetryAfterWait is the longest Retry-After a call waits in-process before
	// it fails with ErrRateLimited (RetryAfterOf tells the rest of the wait).
	// Default DefaultMaxRetryAfterWait.
	MaxRetryAfterWait time.Duration
	// Transport replaces the HTTP transport (tests inject faults here). CABundle
	// is still validated, but only the default transport applies it.
	Transport http.RoundTripper
	// Observe, when set, is told about every HTTP attempt: the call name, the
	// status code (0 for a network error) and its duration. Metrics hook in here.
	Observe func(call string, code int, duration time.Duration)
}

// Client implements Backend over HTTP.
type Client struct {
	base        *url.URL
	adminKey    string
	http        *http.Client
	secretHTTP  *http.Client // for calls that carry a token: NewSecretHTTPClient
	limiter     *rate.Limiter
	timeout     time.Duration
	maxAttempts int
	maxWait     time.Duration
	observe     func(string, int, time.Duration)

	// notBefore is when the backend's last Retry-After expires: no call of this
	// client goes out before it, whichever call was told to wait.
	mu        sync.Mutex
	notBefore time.Time
}

var _ Backend = (*Client)(nil)

// New validates the options and builds a Client.
func New(o Options) (*Client, error) {
	base, err := url.Parse(strings.TrimSuffix(o.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%w: url %q must be an absolute http(s) URL", ErrInvalidConfig, o.URL)
	}
	hc, err := NewHTTPClient(o)
	if err != nil {
		return nil, err
	}
	secretHC, err := NewSecretHTTPClient(o)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:        base,
		adminKey:    o.AdminKey,
		http:        hc,
		secretHTTP:  secretHC,
		limiter:     rate.NewLimiter(rate.Inf, 0),
		timeout:     o.Timeout,
		maxAttempts: o.MaxAttempts,
		maxWait:     o.MaxRetryAfterWait,
		observe:     o.Observe,
	}
	if o.QPS > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(o.QPS), max(1, o.Burst))
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = DefaultMaxAttempts
	}
	if c.maxWait <= 0 {
		c.maxWait = DefaultMaxRetryAfterWait
	}
	return c, nil
}

// NewHTTPClient is the HTTP client of a backend's options, for every backend
// type: o.Transport, or a transport that trusts o.CABundle (validated either
// way); redirects are never followed, so that no credential is sent elsewhere.
// An http:// URL to a host that is not loopback is ErrInsecureHTTP unless
// allowed.
func NewHTTPClient(o Options) (*http.Client, error) {
	transport, err := newTransport(o)
	if err != nil {
		return nil, err
	}
	return noRedirects(transport), nil
}

// NewSecretHTTPClient is the HTTP client, on the same terms as NewHTTPClient,
// for the calls whose request or answer holds a secret (a create, a reset, a
// credentials read; Hydra's client secrets and token grants). It has
// connections of its own, closed SecretConnIdle after its last call: a
// connection keeps the last request it wrote and the last answer it read in its
// buffers for as long as it lives, so on a connection shared with routine reads
// an auth token would stay in memory at rest (docs/security.md; test e2e
// TestOperatorHeapHoldsNoAuthToken). Under load the connections stay open and
// are reused, so a burst of creates pays no new connection each.
func NewSecretHTTPClient(o Options) (*http.Client, error) {
	transport, err := newTransport(o)
	if err != nil {
		return nil, err
	}
	if t, ok := transport.(*http.Transport); ok && o.Transport == nil {
		// No idle timeout of the transport's own: a connection's idle timer would
		// keep it, and its buffers, reachable for that long even after it is closed.
		t.IdleConnTimeout = 0
	}
	return noRedirects(IdleClosing(transport)), nil
}

// newTransport is o.Transport, or a transport that trusts o.CABundle.
func newTransport(o Options) (http.RoundTripper, error) {
	if err := CheckTransport(o.URL, o.AllowInsecureHTTP); err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	if len(o.CABundle) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(o.CABundle) {
			return nil, fmt.Errorf("%w: caBundle holds no PEM certificate", ErrInvalidConfig)
		}
	}
	if o.Transport != nil {
		return o.Transport, nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	if roots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

func noRedirects(t http.RoundTripper) *http.Client {
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// SecretConnIdle is how long the connections that carried a secret stay open
// after the last answer on them was read.
const SecretConnIdle = time.Second

// IdleClosing wraps a transport so that its idle connections are closed
// SecretConnIdle after the last answer through it was closed: the transport of
// NewSecretHTTPClient, and of the operator's Secret writes to the API server.
// The transport should set no idle timeout of its own (IdleConnTimeout 0): a
// connection's idle timer would keep it, and its buffers, reachable for that
// long even after it is closed.
func IdleClosing(base http.RoundTripper) http.RoundTripper {
	return &idleClosing{base: base}
}

// idleClosing is IdleClosing's transport.
type idleClosing struct {
	base http.RoundTripper

	mu   sync.Mutex
	idle *time.Timer
}

func (t *idleClosing) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.closeWhenIdle()
		return nil, err
	}
	resp.Body = &closeNotifier{ReadCloser: resp.Body, closed: t.closeWhenIdle}
	return resp, nil
}

// CloseIdleConnections closes the idle connections now.
func (t *idleClosing) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// closeWhenIdle (re)starts the countdown to closing the idle connections. A
// connection goes back to the idle pool when its answer's body is closed,
// which is when this runs.
func (t *idleClosing) closeWhenIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = time.AfterFunc(SecretConnIdle, t.CloseIdleConnections)
		return
	}
	t.idle.Reset(SecretConnIdle)
}

// closeNotifier calls closed once the body is closed.
type closeNotifier struct {
	io.ReadCloser
	closed func()
	once   sync.Once
}

func (b *closeNotifier) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.closed)
	return err
}

// request describes one API call.
type request struct {
	call    string // name for errors and metrics, e.g. "create"
	method  string
	path    string
	query   url.Values
	header  http.Header
	body    any
	noAdmin bool
	// carriesSecret marks a call whose answer holds an auth token: it goes over
	// the connections of NewSecretHTTPClient, closed soon after the last such
	// call, so that no connection's read buffer keeps a token at rest.
	carriesSecret bool
}

// response is a successful call.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do runs a call with retries and returns the first 2xx or 304 response.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", r.call, err)
		}
	}
	for attempt := 1; ; attempt++ {
		if err := c.waitRetryAfter(ctx, r.call); err != nil {
			return nil, err
		}
		if err := c.limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", r.call, ErrUnavailable, err)
		}
		resp, err := c.attempt(ctx, r, payload)
		if err == nil {
			return resp, nil
		}
		after := RetryAfterOf(err)
		if after > 0 {
			c.mu.Lock()
			c.notBefore = later(c.notBefore, time.Now().Add(after))
			c.mu.Unlock()
		}
		if attempt >= c.maxAttempts || !retryable(r, err) {
			return nil, err
		}
		wait := backoff(attempt)
		if after > 0 {
			wait = after // never call again before the backend said
		}
		if after > c.maxWait {
			return nil, err // the caller requeues; no worker waits that long
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		case <-timer.C:
		}
	}
}

// waitRetryAfter holds a call until the backend's last Retry-After has expired,
// or fails it at once with ErrRateLimited when the caller cannot wait that long.
func (c *Client) waitRetryAfter(ctx context.Context, call string) error {
	c.mu.Lock()
	wait := time.Until(c.notBefore)
	c.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); wait > c.maxWait || (ok && time.Until(deadline) < wait) {
		return &APIError{Call: call, StatusCode: http.StatusTooManyRequests, Title: "waiting for Retry-After", RetryAfter: wait, sentinel: ErrRateLimited, local: true}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return &APIError{Call: call, StatusCode: http.StatusTooManyRequests, Title: "waiting for Retry-After", RetryAfter: wait, sentinel: ErrRateLimited, local: true}
	case <-timer.C:
		return nil
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (c *Client) attempt(ctx context.Context, r request, payload []byte) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.base
	u.Path += r.path
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.call, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if payload != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if !r.noAdmin {
		req.Header.Set("Authorization", "Bearer "+c.adminKey)
	}
	hc := c.http
	if r.carriesSecret {
		hc = c.secretHTTP
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		c.record(r.call, 0, start)
		return nil, &APIError{Call: r.call, Title: "backend unreachable: " + NetworkReason(err), sentinel: ErrUnavailable, local: true}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	c.record(r.call, resp.StatusCode, start)
	if err != nil {
		return nil, &APIError{Call: r.call, StatusCode: resp.StatusCode, Title: "response cut short", sentinel: ErrUnavailable, local: true}
	}
	if resp.StatusCode < 300 || resp.StatusCode == http.StatusNotModified {
		return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
	}
	return nil, decodeProblem(r.call, resp.StatusCode, resp.Header, data)
}

func (c *Client) record(call string, code int, start time.Time) {
	if c.observe != nil {
		c.observe(call, code, time.Since(start))
	}
}

// NetworkReason names a transport failure without quoting anything the server
// sent; every backend type words its network errors with it.
func NetworkReason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// decodeProblem turns an error response into an *APIError. Only the problem's type,
// title and field errors are kept, each cut to a bounded length.
func decodeProblem(call string, status int, header http.Header, body []byte) *APIError {
	var p struct {
		Type   string       `json:"type"`
		Title  string       `json:"title"`
		Errors []FieldError `json:"errors"`
	}
	_ = json.Unmarshal(body, &p)
	e := &APIError{Call: call, StatusCode: status, Type: p.Type, Title: clip(p.Title, 200), sentinel: sentinelFor(status)}
	if e.Title == "" {
		e.Title = http.StatusText(status)
	}
	if e.Title == "" {
		e.Title = "HTTP " + strconv.Itoa(status)
	}
	for _, f := range p.Errors {
		if len(e.Fields) == 20 {
			break
		}
		if fieldPath.MatchString(f.Field) {
			e.Fields = append(e.Fields, FieldError{Field: f.Field, Detail: clip(f.Detail, 300)})
		}
	}
	e.RetryAfter = RetryAfter(status, header)
	return e
}

// fieldPath is what a field name in a problem document must look like to be
// kept: a JSON name with an optional index, such as scopes[3].
var fieldPath = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]{0,63}(\[[0-9]{1,4}\])?$`)

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func sentinelFor(status int) error {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
		return ErrInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusPreconditionFailed:
		return ErrPreconditionFailed
	case http.StatusTooManyRequests:
		return ErrRateLimited
	}
	return ErrUnavailable
}

// retryable reports the failures that a repeat may cure: rate limits, server errors,
// network errors and, for a call with an idempotency key, a concurrent request with
// the same key. Any other conflict (an update that claims a token someone else has
// claimed) stays a conflict however often it is repeated.
func retryable(r request, err error) bool {
	if errors.Is(err, ErrConflict) {
		return r.header.Get("Idempotency-Key") != ""
	}
	return errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable)
}

// backoff is exponential with full jitter: 200ms, 400ms, ... capped at maxBackoff.
func backoff(attempt int) time.Duration {
	d := min(defaultBackoff<<(attempt-1), maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// parseRetryAfter reads delay-seconds or an HTTP date.
// RetryAfter is how long an answer with this status and header asks the caller
// to wait (a Retry-After of seconds or an HTTP date, on 429 and 503 only).
func RetryAfter(status int, header http.Header) time.Duration {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
		return 0
	}
	return parseRetryAfter(header.Get("Retry-After"), time.Now())
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func decode[T any](call string, resp *response) (*T, error) {
	var v T
	if err := json.Unmarshal(resp.body, &v); err != nil {
		return nil, &APIError{Call: call, StatusCode: resp.status, Title: "malformed response", sentinel: ErrUnavailable, local: true}
	}
	return &v, nil
}

func tokenPath(sid string) string { return "/v1/tokens/" + url.PathEscape(sid) }

// Catalog implements Backend.
func (c *Client) Catalog(ctx context.Context) (*Catalog, error) {
	resp, err := c.do(ctx, request{call: "catalog", method: http.MethodGet, path: "/v1/catalog"})
	if err != nil {
		return nil, err
	}
	return decode[Catalog]("catalog", resp)
}

// Create implements Backend.
func (c *Client) Create(ctx context.Context, idempotencyKey string, req CreateRequest) (*Token, Credentials, error) {
	resp, err := c.do(ctx, request{
		call: "create", method: http.MethodPost, path: "/v1/tokens",
		header: http.Header{"Idempotency-Key": {idempotencyKey}}, body: req, carriesSecret: true,
	})
	if err != nil {
		return nil, Credentials{}, err
	}
	created, err := decode[struct {
		Token
		AuthToken AuthToken `json:"authToken"`
	}]("create", resp)
	if err != nil {
		return nil, Credentials{}, err
	}
	tok := created.Token
	tok.ETag = resp.header.Get("ETag")
	return &tok, Credentials{AccountSID: tok.SID, AuthToken: created.AuthToken, Generation: tok.Generation}, nil
}

// FindByExternalID implements Backend.
// An empty id is refused (it would list every unclaimed token), and items whose
// externalId is not the one asked for are dropped: a backend that ignores the
// filter must not make the caller take someone else's tokens for its own.
func (c *Client) FindByExternalID(ctx context.Context, externalID string) ([]Token, error) {
	if externalID == "" {
		return nil, fmt.Errorf("list: %w: an empty external id", ErrInvalidConfig)
	}
	return c.list(ctx, externalID)
}

// FindUnclaimed lists the tokens that no one has claimed (no external id): the
// ones made by hand, which an ApiToken may adopt. It is not part of the Backend
// interface: only kubectl apitoken import uses it. Items with an external id are
// dropped whatever the backend answers.
func (c *Client) FindUnclaimed(ctx context.Context) ([]Token, error) {
	return c.list(ctx, "")
}

// list lists the tokens whose external id is externalID; an empty one asks for
// the unclaimed tokens. The backend's filter is not trusted: items with another
// external id are dropped.
func (c *Client) list(ctx context.Context, externalID string) ([]Token, error) {
	resp, err := c.do(ctx, request{
		call: "list", method: http.MethodGet, path: "/v1/tokens",
		query: url.Values{"externalId": {externalID}},
	})
	if err != nil {
		return nil, err
	}
	list, err := decode[struct {
		Items []Token `json:"items"`
	}]("list", resp)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(list.Items, func(t Token) bool { return t.ExternalID != externalID }), nil
}

// Get implements Backend.
func (c *Client) Get(ctx context.Context, sid, etag string) (*Token, bool, error) {
	r := request{call: "get", method: http.MethodGet, path: tokenPath(sid)}
	if etag != "" {
		r.header = http.Header{"If-None-Match": {etag}}
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, false, err
	}
	if resp.status == http.StatusNotModified {
		return nil, false, nil
	}
	tok, err := decode[Token]("get", resp)
	if err != nil {
		return nil, false, err
	}
	tok.ETag = resp.header.Get("ETag")
	return tok, true, nil
}

// Update implements Backend.
func (c *Client) Update(ctx context.Context, sid, etag string, patch TokenPatch) (*Token, error) {
	r := request{
		call: "update", method: http.MethodPatch, path: tokenPath(sid), body: patch,
		header: http.Header{"Content-Type": {"application/merge-patch+json"}},
	}
	if etag != "" {
		r.header.Set("If-Match", etag)
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	tok, err := decode[Token]("update", resp)
	if err != nil {
		return nil, err
	}
	tok.ETag = resp.header.Get("ETag")
	return tok, nil
}

// Credentials implements Backend.
func (c *Client) Credentials(ctx context.Context, sid string) (Credentials, error) {
	resp, err := c.do(ctx, request{call: "credentials", method: http.MethodGet, path: tokenPath(sid) + "/credentials", carriesSecret: true})
	if err != nil {
		return Credentials{}, err
	}
	creds, err := decode[Credentials]("credentials", resp)
	if err != nil {
		return Credentials{}, err
	}
	return *creds, nil
}

// Capabilities implements Backend: the Token Service API has every one but a
// caller-chosen SID.
func (c *Client) Capabilities() Capabilities {
	return Capabilities{ConditionalReads: true, RetrievableSecrets: true, InPlaceReset: true, Disable: true, Catalog: true, Claim: true, ServerChosenSID: true}
}

// Reset implements Backend. The Token Service issues the new auth token: next
// is ignored.
func (c *Client) Reset(ctx context.Context, sid, idempotencyKey string, _ AuthToken) (Credentials, error) {
	resp, err := c.do(ctx, request{
		call: "reset", method: http.MethodPost, path: tokenPath(sid) + "/reset",
		header: http.Header{"Idempotency-Key": {idempotencyKey}}, carriesSecret: true,
	})
	if err != nil {
		return Credentials{}, err
	}
	creds, err := decode[Credentials]("reset", resp)
	if err != nil {
		return Credentials{}, err
	}
	creds.ETag = resp.header.Get("ETag")
	return *creds, nil
}

// Delete implements Backend.
func (c *Client) Delete(ctx context.Context, sid string) error {
	_, err := c.do(ctx, request{call: "delete", method: http.MethodDelete, path: tokenPath(sid)})
	return err
}

// Verify makes the data-plane check with the token's own credentials: nil when the
// token is enabled and holds scope (any scope when empty). It is not part of Backend:
// the operator never needs it; tests and smoke checks do.
func (c *Client) Verify(ctx context.Context, creds Credentials, scope string) error {
	r := request{call: "verify", method: http.MethodGet, path: "/v1/verify", noAdmin: true,
		header: http.Header{"Authorization": {basicAuth(creds)}}}
	if scope != "" {
		r.query = url.Values{"scope": {scope}}
	}
	_, err := c.do(ctx, r)
	return err
}

// SecretAccepted implements Backend with the data-plane check: a 401 is a secret
// that is not live (or a token that is disabled or gone), a 403 (a missing
// scope) is one that is.
func (c *Client) SecretAccepted(ctx context.Context, sid string, secret AuthToken) (bool, error) {
	err := c.Verify(ctx, Credentials{AccountSID: sid, AuthToken: secret}, "")
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnauthorized):
		if e, ok := errors.AsType[*APIError](err); ok && e.StatusCode == http.StatusForbidden {
			return true, nil
		}
		return false, nil
	}
	return false, err
}

func basicAuth(creds Credentials) string {
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(creds.AccountSID, creds.AuthToken.Reveal())
	return req.Header.Get("Authorization")
}
