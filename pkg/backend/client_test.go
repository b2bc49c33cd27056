package backend_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

const adminKey = "client-test-key"

func newClient(t *testing.T, o backend.Options) *backend.Client {
	t.Helper()
	if o.AdminKey == "" {
		o.AdminKey = adminKey
	}
	c, err := backend.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createRequest(externalID string) backend.CreateRequest {
	return backend.CreateRequest{
		Name: "client test", PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"},
		State: backend.StateEnabled, ExternalID: externalID,
	}
}

func TestClientLifecycle(t *testing.T) {
	ctx := t.Context()
	ts := framework.NewTokenService(t, adminKey, nil)
	c := newClient(t, backend.Options{URL: ts.URL})

	cat, err := c.Catalog(ctx)
	if err != nil || cat.LatestAPIVersion != 16 {
		t.Fatalf("catalog: %+v, %v", cat, err)
	}
	tok, creds, err := c.Create(ctx, "uid-1", createRequest("uid-1"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if tok.SID == "" || creds.AccountSID != tok.SID || creds.AuthToken.Reveal() == "" || creds.Generation != 1 {
		t.Fatalf("create returned %+v %v", tok, creds)
	}
	if err := c.Verify(ctx, creds, "reports:read"); err != nil {
		t.Errorf("verify new token: %v", err)
	}

	found, err := c.FindByExternalID(ctx, "uid-1")
	if err != nil || len(found) != 1 || found[0].SID != tok.SID {
		t.Fatalf("find: %v, %v", found, err)
	}

	got, modified, err := c.Get(ctx, tok.SID, "")
	if err != nil || !modified || got.ETag == "" {
		t.Fatalf("get: %+v %v %v", got, modified, err)
	}
	if again, modified, err := c.Get(ctx, tok.SID, got.ETag); err != nil || modified || again != nil {
		t.Fatalf("conditional get: %+v %v %v, want not modified", again, modified, err)
	}

	scopes := []string{"reports:read", "actions:read"}
	updated, err := c.Update(ctx, tok.SID, got.ETag, backend.TokenPatch{Scopes: &scopes})
	if err != nil || !slices.Equal(updated.Scopes, []string{"actions:read", "reports:read"}) || updated.ETag == got.ETag {
		t.Fatalf("update: %+v %v", updated, err)
	}
	if _, err := c.Update(ctx, tok.SID, got.ETag, backend.TokenPatch{Scopes: &scopes}); !errors.Is(err, backend.ErrPreconditionFailed) {
		t.Errorf("update with a stale etag: %v, want ErrPreconditionFailed", err)
	}

	reset, err := c.Reset(ctx, tok.SID, "uid-1/nonce-1", "")
	if err != nil || reset.Generation != 2 {
		t.Fatalf("reset: %v %v", reset, err)
	}
	if err := c.Verify(ctx, creds, "reports:read"); !errors.Is(err, backend.ErrUnauthorized) {
		t.Errorf("old token after reset: %v, want ErrUnauthorized", err)
	}
	current, err := c.Credentials(ctx, tok.SID)
	if err != nil || current.AuthToken != reset.AuthToken {
		t.Fatalf("credentials after reset differ: %v", err)
	}

	if err := c.Delete(ctx, tok.SID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := c.Delete(ctx, tok.SID); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, _, err := c.Get(ctx, tok.SID, ""); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
}

func TestClientErrors(t *testing.T) {
	ctx := t.Context()
	ts := framework.NewTokenService(t, adminKey, nil)
	c := newClient(t, backend.Options{URL: ts.URL})

	req := createRequest("bad")
	req.Scopes = []string{"nosuch:scope"}
	req.PrimaryContact = "nobody@example.com"
	_, _, err := c.Create(ctx, "bad", req)
	if !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("invalid create: %v, want ErrInvalid", err)
	}
	apiErr, ok := errors.AsType[*backend.APIError](err)
	if !ok || apiErr.StatusCode != http.StatusUnprocessableEntity || len(apiErr.Fields) != 2 {
		t.Fatalf("invalid create: %#v", err)
	}
	for _, want := range []string{"primaryContact", "scopes[0]"} {
		if !strings.Contains(apiErr.InvalidFields(), want) {
			t.Errorf("invalid fields %q lack %q", apiErr.InvalidFields(), want)
		}
	}
	if !strings.Contains(apiErr.Fields[1].Detail+apiErr.Fields[0].Detail, "nosuch:scope") {
		t.Errorf("the field details should keep the backend's explanation: %+v", apiErr.Fields)
	}

	wrongKey := newClient(t, backend.Options{URL: ts.URL, AdminKey: "wrong"})
	if _, err := wrongKey.Catalog(ctx); !errors.Is(err, backend.ErrUnauthorized) {
		t.Errorf("wrong admin key: %v, want ErrUnauthorized", err)
	} else if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error quotes the admin key: %v", err)
	}

	down := newClient(t, backend.Options{URL: "http://127.0.0.1:1", MaxAttempts: 2})
	if _, err := down.Catalog(ctx); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("backend down: %v, want ErrUnavailable", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]backend.Options{
		"no url":       {},
		"relative url": {URL: "/v1"},
		"ftp":          {URL: "ftp://x"},
		"bad CA":       {URL: "https://x", CABundle: []byte("not a certificate")},
	} {
		if _, err := backend.New(o); !errors.Is(err, backend.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestNewAllowsPlainHTTPOnlyToLoopback(t *testing.T) {
	tests := map[string]struct {
		url           string
		allowInsecure bool
		wantInsecure  bool
	}{
		"https anywhere":                {url: "https://tokens.example.com"},
		"http to 127.0.0.1":             {url: "http://127.0.0.1:8080"},
		"http to 127.0.0.0/8":           {url: "http://127.9.9.9"},
		"http to ::1":                   {url: "http://[::1]:8080/base"},
		"http to localhost":             {url: "http://LocalHost:8080"},
		"http to a name":                {url: "http://tokens.example.com", wantInsecure: true},
		"http to a service name":        {url: "http://tokenservice.apitoken-system.svc:8080", wantInsecure: true},
		"http to a private address":     {url: "http://10.0.0.1", wantInsecure: true},
		"http to a localhost lookalike": {url: "http://localhost.example.com", wantInsecure: true},
		"http to 0.0.0.0":               {url: "http://0.0.0.0:8080", wantInsecure: true},
		"http to a name, allowed":       {url: "http://tokens.example.com", allowInsecure: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := backend.New(backend.Options{URL: tc.url, AllowInsecureHTTP: tc.allowInsecure})
			if got := errors.Is(err, backend.ErrInsecureHTTP); got != tc.wantInsecure {
				t.Fatalf("New(%s): %v, want ErrInsecureHTTP %t", tc.url, err, tc.wantInsecure)
			}
			if tc.wantInsecure && !errors.Is(err, backend.ErrInvalidConfig) {
				t.Errorf("ErrInsecureHTTP should be an ErrInvalidConfig: %v", err)
			}
			if !tc.wantInsecure && err != nil {
				t.Errorf("New(%s): %v", tc.url, err)
			}
		})
	}
	_, err := backend.New(backend.Options{URL: "http://admin:hunter2@tokens.example.com"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the refusal must not quote a password of the URL: %v", err)
	}
}

// TestClientRetriesUntilAnswered: a call answered 502 or 429 is repeated until it
// succeeds, and after a 429 not before its Retry-After.
func TestClientRetriesUntilAnswered(t *testing.T) {
	cases := map[string]struct {
		faults       *faults.Transport
		wantAttempts int
		// minGap is the least time between the first two attempts.
		minGap time.Duration
	}{
		"two 502s":                  {&faults.Transport{Policy: faults.FirstN(2, faults.BadGateway)}, 3, 0},
		"a 429 with Retry-After: 1": {&faults.Transport{Policy: faults.FirstN(1, faults.TooMany), RetryAfter: time.Second}, 2, time.Second},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ts := framework.NewTokenService(t, adminKey, nil)
			c := newClient(t, backend.Options{URL: ts.URL, Transport: tc.faults})
			if _, err := c.Catalog(t.Context()); err != nil {
				t.Fatalf("catalog after %s: %v", name, err)
			}
			arrivals := tc.faults.Arrivals()
			if len(arrivals) != tc.wantAttempts {
				t.Fatalf("%d attempts, want %d", len(arrivals), tc.wantAttempts)
			}
			if gap := arrivals[1].Sub(arrivals[0]); gap < tc.minGap {
				t.Errorf("retried %v after the first attempt, want at least %v", gap, tc.minGap)
			}
		})
	}
}

func TestClientGivesUpWhenRetryAfterOutlastsDeadline(t *testing.T) {
	f := &faults.Transport{Policy: faults.FirstN(1, faults.TooMany), RetryAfter: 30 * time.Second}
	ts := framework.NewTokenService(t, adminKey, nil)
	c := newClient(t, backend.Options{URL: ts.URL, Transport: f})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := c.Catalog(ctx)
	if !errors.Is(err, backend.ErrRateLimited) || backend.RetryAfterOf(err) != 30*time.Second {
		t.Fatalf("err %v (retry after %v), want ErrRateLimited after 30s", err, backend.RetryAfterOf(err))
	}
	if len(f.Arrivals()) != 1 {
		t.Errorf("%d attempts, want 1: the client must not call before Retry-After", len(f.Arrivals()))
	}
}

// A Retry-After longer than MaxRetryAfterWait fails the call at once, without a
// deadline: a throttling backend never holds the caller, and the next call made
// before Retry-After has passed fails at once too, without reaching the backend.
func TestClientDoesNotWaitOutLongRetryAfter(t *testing.T) {
	f := &faults.Transport{Policy: faults.FirstN(1, faults.TooMany), RetryAfter: 120 * time.Second}
	ts := framework.NewTokenService(t, adminKey, nil)
	c := newClient(t, backend.Options{URL: ts.URL, Transport: f, MaxRetryAfterWait: time.Second})
	start := time.Now()
	for range 2 {
		_, err := c.Catalog(t.Context())
		if !errors.Is(err, backend.ErrRateLimited) || backend.RetryAfterOf(err) < 100*time.Second {
			t.Fatalf("err %v (retry after %v), want ErrRateLimited with the rest of 120s", err, backend.RetryAfterOf(err))
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("two calls took %v: the client waited out a 120s Retry-After", took)
	}
	if len(f.Arrivals()) != 1 {
		t.Errorf("%d requests reached the backend, want 1", len(f.Arrivals()))
	}
}

func TestClientDoesNotRetryClientErrors(t *testing.T) {
	f := &faults.Transport{Policy: faults.FirstN(5, faults.Invalid)}
	ts := framework.NewTokenService(t, adminKey, nil)
	c := newClient(t, backend.Options{URL: ts.URL, Transport: f})
	if _, err := c.Catalog(t.Context()); !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", err)
	}
	if len(f.Arrivals()) != 1 {
		t.Errorf("%d attempts for a 422, want 1", len(f.Arrivals()))
	}
}

func TestCreateAfterLostResponseMakesOneToken(t *testing.T) {
	ts := framework.NewTokenService(t, adminKey, nil)
	c := newClient(t, backend.Options{URL: ts.URL, Transport: &faults.Transport{Policy: faults.FirstN(1, faults.LostResponse)}})
	tok, creds, err := c.Create(t.Context(), "uid-lost", createRequest("uid-lost"))
	if err != nil {
		t.Fatalf("create with a lost response: %v", err)
	}
	plain := newClient(t, backend.Options{URL: ts.URL})
	found, err := plain.FindByExternalID(t.Context(), "uid-lost")
	if err != nil || len(found) != 1 || found[0].SID != tok.SID {
		t.Fatalf("after a lost response: %d tokens (%v), want exactly the one returned", len(found), err)
	}
	if err := plain.Verify(t.Context(), creds, "reports:read"); err != nil {
		t.Errorf("the replayed credentials do not verify: %v", err)
	}
}

func TestClientRateLimit(t *testing.T) {
	f := &faults.Transport{}
	ts := framework.NewTokenService(t, adminKey, nil)
	c := newClient(t, backend.Options{URL: ts.URL, QPS: 2, Burst: 1, Transport: f})
	for range 3 {
		if _, err := c.Catalog(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if spread := f.Arrivals()[2].Sub(f.Arrivals()[0]); spread < 900*time.Millisecond {
		t.Errorf("3 calls at 2 QPS took %v, want at least 1s", spread)
	}
}

func TestClientTLSWithCABundle(t *testing.T) {
	srv, err := tokenservice.New(tokenservice.Config{AdminKey: adminKey})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv)
	t.Cleanup(func() { ts.Close(); _ = srv.Close() })
	bundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})

	trusted := newClient(t, backend.Options{URL: ts.URL, CABundle: bundle})
	if _, err := trusted.Catalog(t.Context()); err != nil {
		t.Errorf("with the CA bundle: %v", err)
	}
	untrusted := newClient(t, backend.Options{URL: ts.URL, MaxAttempts: 1})
	if _, err := untrusted.Catalog(t.Context()); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("without the CA bundle: %v, want a TLS failure", err)
	}
}

func TestObserveSeesEveryAttempt(t *testing.T) {
	f := &faults.Transport{Policy: faults.FirstN(1, faults.ServerError)}
	ts := framework.NewTokenService(t, adminKey, nil)
	var mu sync.Mutex
	var seen []int
	c := newClient(t, backend.Options{URL: ts.URL, Transport: f, Observe: func(call string, code int, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if call == "catalog" {
			seen = append(seen, code)
		}
	}})
	if _, err := c.Catalog(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{503, 200}) {
		t.Errorf("observed %v, want [503 200]", seen)
	}
}

// TestUpdateClaimsExternalID: an update that sets ExternalID claims a token that has
// none; a second claim with another id is ErrConflict at once, without retries,
// while a 409 for an idempotency key still in flight is retried.
func TestUpdateClaimsExternalID(t *testing.T) {
	ctx := t.Context()
	var busyOnce sync.Once
	ts := framework.NewTokenService(t, adminKey, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			busy := false
			if strings.HasSuffix(r.URL.Path, "/reset") {
				busyOnce.Do(func() { busy = true })
			}
			if busy { // as when a request with the same key is still in flight
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write([]byte(`{"type":"https://apitoken.dev/problems/idempotency-key-in-flight","title":"in flight","status":409}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	f := &faults.Transport{}
	c := newClient(t, backend.Options{URL: ts.URL, Transport: f})
	tok, _, err := c.Create(ctx, "orphan", createRequest(""))
	if err != nil {
		t.Fatal(err)
	}

	uid := "uid-claim"
	if (backend.TokenPatch{ExternalID: &uid}).IsEmpty() {
		t.Fatal("a patch that sets only ExternalID is empty")
	}
	claimed, err := c.Update(ctx, tok.SID, tok.ETag, backend.TokenPatch{ExternalID: &uid})
	if err != nil || claimed.ExternalID != uid {
		t.Fatalf("claim: %+v, %v", claimed, err)
	}
	if found, err := c.FindByExternalID(ctx, uid); err != nil || len(found) != 1 || found[0].SID != tok.SID {
		t.Fatalf("find the claimed token: %v, %v", found, err)
	}

	other := "uid-other"
	before := f.Requests()
	if _, err := c.Update(ctx, tok.SID, claimed.ETag, backend.TokenPatch{ExternalID: &other}); !errors.Is(err, backend.ErrConflict) {
		t.Fatalf("claim of a claimed token: %v, want ErrConflict", err)
	}
	if n := f.Requests() - before; n != 1 {
		t.Errorf("a claim conflict took %d attempts, want 1: a retry cannot cure it", n)
	}

	before = f.Requests()
	if _, err := c.Reset(ctx, tok.SID, "reset-1", ""); err != nil {
		t.Fatalf("reset after a 409 in flight: %v", err)
	}
	if n := f.Requests() - before; n != 2 {
		t.Errorf("a reset answered 409 (key in flight) took %d attempts, want 2", n)
	}
}

// The client trusts no backend about ownership: an empty external id is refused
// before any request, and items of another external id are dropped even when the
// backend ignores the filter.
func TestFindByExternalIDTrustsOnlyMatchingItems(t *testing.T) {
	ignoreFilter := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/tokens" && r.Method == http.MethodGet {
				q := r.URL.Query()
				q.Del("externalId") // a backend that lists every token
				r.URL.RawQuery = q.Encode()
			}
			next.ServeHTTP(w, r)
		})
	}
	ts := framework.NewTokenService(t, adminKey, ignoreFilter)
	c := newClient(t, backend.Options{URL: ts.URL})
	for _, id := range []string{"mine", "theirs"} {
		if _, _, err := c.Create(t.Context(), "key-"+id, createRequest(id)); err != nil {
			t.Fatal(err)
		}
	}
	found, err := c.FindByExternalID(t.Context(), "mine")
	if err != nil || len(found) != 1 || found[0].ExternalID != "mine" {
		t.Errorf("found %+v (%v), want only the token of external id mine", found, err)
	}
	if _, err := c.FindByExternalID(t.Context(), ""); err == nil {
		t.Error("an empty external id was sent to the backend")
	}
}
