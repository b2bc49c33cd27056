package hydra

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework/hydraserver"
)

// The package's tests run against a real Hydra (DSN=memory) that TestMain starts
// on free loopback ports.
var (
	adminURL  string
	publicURL string
	hc        *Client
	server    *hydraserver.Server
	idCounter atomic.Int64
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	bin, err := hydraserver.Binary("../../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hydra binary:", err)
		return 1
	}
	h, err := hydraserver.Start(bin, "memory")
	if err != nil {
		fmt.Fprintln(os.Stderr, "start hydra:", err)
		return 1
	}
	defer h.Stop()
	adminURL, publicURL, server = h.AdminURL, h.PublicURL, h
	hc, err = New(Options{AdminURL: adminURL, TokenURL: publicURL + "/oauth2/token", Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "new client:", err)
		return 1
	}
	return m.Run()
}

// --- helpers ---

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newID returns a fresh client ID for this test.
func newID(t *testing.T) string {
	t.Helper()
	return clientIDFor(t.Name() + "/" + strconv.FormatInt(idCounter.Add(1), 10))
}

func mustSecret(t *testing.T) backend.AuthToken {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noSecret fails when err's text holds one of the secrets.
func noSecret(t *testing.T, err error, secrets ...backend.AuthToken) {
	t.Helper()
	if err == nil {
		return
	}
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		for _, s := range secrets {
			if s.Reveal() != "" && strings.Contains(text, s.Reveal()) {
				t.Fatalf("error text holds a secret: %s", text)
			}
		}
	}
}

func create(t *testing.T, id string, req backend.CreateRequest, secret backend.AuthToken) *backend.Token {
	t.Helper()
	tok, _, err := hc.CreateClient(ctxFor(t), id, req, secret)
	noSecret(t, err, secret)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return tok
}

// tokenGrant asks the token endpoint for a client-credentials token.
func tokenGrant(t *testing.T, id string, secret backend.AuthToken, scope string) (status int, errCode, accessToken string) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodPost, publicURL+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret.Reveal()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error       string `json:"error"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token endpoint: HTTP %d, undecodable body: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body.Error, body.AccessToken
}

func mustAccessToken(t *testing.T, id string, secret backend.AuthToken, scope string) string {
	t.Helper()
	status, code, at := tokenGrant(t, id, secret, scope)
	if status != http.StatusOK || at == "" {
		t.Fatalf("token grant for %s: HTTP %d %s", id, status, code)
	}
	return at
}

// active introspects an access token at the admin API.
func active(t *testing.T, accessToken string) bool {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodPost, adminURL+"/admin/oauth2/introspect",
		strings.NewReader(url.Values{"token": {accessToken}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Active bool `json:"active"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Active
}

// rawClient is the client as Hydra's admin API returns it.
func rawClient(t *testing.T, id string) map[string]any {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodGet, adminURL+"/admin/clients/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("raw get %s: HTTP %d", id, resp.StatusCode)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// settings is a Token without what the server decides (times, ETag).
func settings(tok *backend.Token) backend.Token {
	s := *tok
	s.CreatedAt, s.UpdatedAt, s.ETag = time.Time{}, time.Time{}, ""
	return s
}

func ptr[T any](v T) *T { return &v }

// --- unit tests without Hydra ---

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"valid", Options{AdminURL: "http://127.0.0.1:4445/", TokenURL: "https://auth.example.com/oauth2/token"}, false},
		{"admin with path prefix", Options{AdminURL: "https://hydra.example.com/admin-prefix", TokenURL: "https://a.example.com/oauth2/token"}, false},
		{"no admin url", Options{TokenURL: "https://a.example.com/oauth2/token"}, true},
		{"no token url", Options{AdminURL: "http://127.0.0.1:4445"}, true},
		{"relative admin url", Options{AdminURL: "hydra:4445", TokenURL: "https://a.example.com/oauth2/token"}, true},
		{"ftp token url", Options{AdminURL: "http://127.0.0.1:4445", TokenURL: "ftp://a.example.com/token"}, true},
		{"admin url with query", Options{AdminURL: "http://127.0.0.1:4445?x=1", TokenURL: "https://a.example.com/oauth2/token"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if tt.wantErr {
				if !errors.Is(err, backend.ErrInvalidConfig) {
					t.Fatalf("New: got %v, want ErrInvalidConfig", err)
				}
				return
			}
			if err != nil || c == nil {
				t.Fatalf("New: %v", err)
			}
			if c.timeout != DefaultTimeout {
				t.Errorf("timeout %v, want default %v", c.timeout, DefaultTimeout)
			}
		})
	}
}

func TestClientIDFor(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_]*$`)
	a, b := clientIDFor("uid-1"), clientIDFor("uid-2")
	if a != clientIDFor("uid-1") {
		t.Errorf("not deterministic")
	}
	if a == b {
		t.Errorf("two keys gave the same id %s", a)
	}
	for _, id := range []string{a, b, clientIDFor(""), clientIDFor("ünïcode / with spaces")} {
		if !pattern.MatchString(id) || len(id) != len("apitoken-")+24 || !strings.HasPrefix(id, "apitoken-") {
			t.Errorf("id %q has the wrong form", id)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, b := mustSecret(t), mustSecret(t)
	if a.Reveal() == b.Reveal() {
		t.Fatal("two secrets are equal")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a.Reveal())
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret is not 32 bytes of base64url without padding: %d bytes, %v", len(raw), err)
	}
	if fmt.Sprint(a) != "[REDACTED]" {
		t.Errorf("secret prints as %q", fmt.Sprint(a))
	}
}

func TestLocalValidation(t *testing.T) {
	secret := mustSecret(t)
	ctx := ctxFor(t)
	tests := []struct {
		name string
		call func() error
	}{
		{"create with a bad client id", func() error {
			_, _, err := hc.CreateClient(ctx, "bad id/..", backend.CreateRequest{}, secret)
			return err
		}},
		{"create with a short secret", func() error {
			_, _, err := hc.CreateClient(ctx, newID(t), backend.CreateRequest{}, "abc")
			return err
		}},
		{"create with a scope holding a space", func() error {
			_, _, err := hc.CreateClient(ctx, newID(t), backend.CreateRequest{Scopes: []string{"a b"}}, secret)
			return err
		}},
		{"create with an unknown state", func() error {
			_, _, err := hc.CreateClient(ctx, newID(t), backend.CreateRequest{State: "Paused"}, secret)
			return err
		}},
		{"get with an empty client id", func() error { _, err := hc.GetClient(ctx, ""); return err }},
		{"find an empty owner", func() error { _, err := hc.FindByOwner(ctx, ""); return err }},
		{"set secret generation 0", func() error { return hc.SetSecret(ctx, newID(t), secret, 0) }},
		{"secret accepted with a bad client id", func() error { _, err := hc.SecretAccepted(ctx, "a:b", secret); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, backend.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			noSecret(t, err, secret)
		})
	}
}

// TestErrorMapping runs against a fake Hydra that answers a scripted sequence of
// statuses, with a problem text that echoes a secret.
func TestErrorMapping(t *testing.T) {
	secret := mustSecret(t)
	tests := []struct {
		name         string
		statuses     []int
		retryAfter   string
		wantErr      error // nil: success
		wantAttempts int
	}{
		{"ok", []int{200}, "", nil, 1},
		{"503 then ok", []int{503, 503, 200}, "", nil, 3},
		{"500 three times", []int{500, 500, 500, 500}, "", backend.ErrUnavailable, 3},
		{"502 then ok", []int{502, 200}, "", nil, 2},
		{"429 with Retry-After 0 then ok", []int{429, 200}, "0", nil, 2},
		{"429 with a long Retry-After", []int{429, 200}, "30", backend.ErrRateLimited, 1},
		{"400", []int{400}, "", backend.ErrInvalid, 1},
		{"401", []int{401}, "", backend.ErrUnauthorized, 1},
		{"403", []int{403}, "", backend.ErrUnauthorized, 1},
		{"404", []int{404}, "", backend.ErrNotFound, 1},
		{"409", []int{409}, "", backend.ErrConflict, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				i := int(n.Add(1)) - 1
				status := tt.statuses[min(i, len(tt.statuses)-1)]
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				if status == 200 {
					_, _ = io.WriteString(w, `{"client_id":"c1","owner":"o","scope":"a b","grant_types":["client_credentials"],"metadata":{"generation":3}}`)
					return
				}
				_, _ = fmt.Fprintf(w, `{"error":"invalid_request","error_description":"the secret %s is bad"}`, secret.Reveal())
			}))
			defer srv.Close()
			c, err := New(Options{AdminURL: srv.URL, TokenURL: srv.URL + "/oauth2/token"})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := c.GetClient(ctxFor(t), "c1")
			noSecret(t, err, secret)
			if got := int(n.Load()); got != tt.wantAttempts {
				t.Errorf("attempts %d, want %d", got, tt.wantAttempts)
			}
			if tt.wantErr == nil {
				if err != nil || tok.SID != "c1" || tok.Generation != 3 || !slices.Equal(tok.Scopes, []string{"a", "b"}) {
					t.Fatalf("got %+v, %v", tok, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if e, ok := errors.AsType[*backend.APIError](err); !ok || e.Type != "invalid_request" {
				t.Errorf("want an *APIError with Type invalid_request, got %#v", err)
			}
		})
	}
}

// TestConcurrentUpdateIsRetried: Hydra answers 400 when its database aborts a
// request for a concurrent one; that is retried, and after the last attempt an
// unavailability, never the refusal of a value (ErrInvalid stalls an ApiToken).
func TestConcurrentUpdateIsRetried(t *testing.T) {
	for _, tt := range []struct {
		name         string
		conflicts    int
		wantErr      error
		wantAttempts int
	}{
		{"once then ok", 1, nil, 2},
		{"on every attempt", 5, backend.ErrUnavailable, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if int(n.Add(1)) <= tt.conflicts {
					w.WriteHeader(http.StatusBadRequest)
					_, _ = io.WriteString(w, `{"error":"Unable to serialize access due to a concurrent update in another session","error_description":""}`)
					return
				}
				_, _ = io.WriteString(w, `{"client_id":"c1","owner":"o","scope":"a","grant_types":["client_credentials"],"metadata":{"generation":1}}`)
			}))
			defer srv.Close()
			c, err := New(Options{AdminURL: srv.URL, TokenURL: srv.URL + "/oauth2/token"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetClient(ctxFor(t), "c1")
			if got := int(n.Load()); got != tt.wantAttempts {
				t.Errorf("attempts %d, want %d", got, tt.wantAttempts)
			}
			if tt.wantErr == nil && err != nil {
				t.Fatalf("got %v after a concurrent update, want the retry to succeed", err)
			}
			if tt.wantErr != nil && (!errors.Is(err, tt.wantErr) || errors.Is(err, backend.ErrInvalid)) {
				t.Fatalf("got %v, want %v and not %v", err, tt.wantErr, backend.ErrInvalid)
			}
		})
	}
}

func TestFindByOwnerDropsOtherOwners(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("owner") != "mine" {
			t.Errorf("owner filter not sent: %s", r.URL.RawQuery)
		}
		_, _ = io.WriteString(w, `[{"client_id":"a","owner":"mine"},{"client_id":"b","owner":"theirs"},{"client_id":"c","owner":""}]`)
	}))
	defer srv.Close()
	c, err := New(Options{AdminURL: srv.URL, TokenURL: srv.URL + "/oauth2/token"})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := c.FindByOwner(ctxFor(t), "mine")
	if err != nil || len(toks) != 1 || toks[0].SID != "a" {
		t.Fatalf("got %+v, %v; want only client a", toks, err)
	}
}

func TestNetworkErrorHasNoSecret(t *testing.T) {
	port, err := hydraserver.FreePort() // nothing listens there any more
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://127.0.0.1:" + strconv.Itoa(port)
	c, err := New(Options{AdminURL: dead, TokenURL: dead + "/oauth2/token", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	secret := mustSecret(t)
	_, err = c.SecretAccepted(ctxFor(t), "apitoken-x", secret)
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	noSecret(t, err, secret)
	err = c.SetSecret(ctxFor(t), "apitoken-x", secret, 2)
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	noSecret(t, err, secret)
}

func TestETagOf(t *testing.T) {
	base := backend.Token{SID: "a", Scopes: []string{"x"}, State: backend.StateEnabled, Generation: 1,
		UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	copied := base
	copied.Scopes = slices.Clone(base.Scopes)
	if ETagOf(base) != ETagOf(copied) {
		t.Fatal("not deterministic")
	}
	withETag := base
	withETag.ETag = `"old"`
	if ETagOf(withETag) != ETagOf(base) {
		t.Error("the ETag field changes the ETag")
	}
	if !regexp.MustCompile(`^"[0-9a-f]{64}"$`).MatchString(ETagOf(base)) {
		t.Errorf("ETag %s is not a quoted hex sha256", ETagOf(base))
	}
	changes := []func(*backend.Token){
		func(tok *backend.Token) { tok.Name = "n" },
		func(tok *backend.Token) { tok.Scopes = []string{"y"} },
		func(tok *backend.Token) { tok.State = backend.StateDisabled },
		func(tok *backend.Token) { tok.Generation = 2 },
		func(tok *backend.Token) { tok.UpdatedAt = tok.UpdatedAt.Add(time.Microsecond) },
	}
	for i, change := range changes {
		other := base
		change(&other)
		if ETagOf(other) == ETagOf(base) {
			t.Errorf("change %d leaves the ETag", i)
		}
	}
}

// --- tests against Hydra ---

// clientIDFor derives a client ID from a key: "apitoken-" and the first 24 hex
// digits of its SHA-256.
func clientIDFor(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "apitoken-" + hex.EncodeToString(sum[:])[:24]
}
