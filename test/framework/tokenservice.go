package framework

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// TokenService is tokenservice in-process behind an httptest server, with every
// auth token it hands out recorded for the leak search.
type TokenService struct {
	URL      string
	AdminKey string
	// Admin is the test's own view of the backend, with the admin key.
	Admin *backend.Client
	// Issued holds every auth token the service answered with.
	Issued *IssuedTokens

	server *tokenservice.Server
	http   *httptest.Server
}

// StartTokenService starts tokenservice in memory. wrap, when set, puts a
// handler in front of it (a gate, a counter, a canary); the token capture sits
// between the two, so it sees what tokenservice itself answered.
func StartTokenService(adminKey string, wrap func(http.Handler) http.Handler) (*TokenService, error) {
	srv, err := tokenservice.New(tokenservice.Config{AdminKey: adminKey})
	if err != nil {
		return nil, err
	}
	issued := &IssuedTokens{}
	h := issued.Capture(srv)
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	admin, err := backend.New(backend.Options{URL: ts.URL, AdminKey: adminKey})
	if err != nil {
		ts.Close()
		_ = srv.Close()
		return nil, err
	}
	return &TokenService{URL: ts.URL, AdminKey: adminKey, Admin: admin, Issued: issued, server: srv, http: ts}, nil
}

// NewTokenService starts tokenservice for one test and stops it at its end.
func NewTokenService(t testing.TB, adminKey string, wrap func(http.Handler) http.Handler) *TokenService {
	t.Helper()
	s, err := StartTokenService(adminKey, wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the HTTP server and closes the store.
func (s *TokenService) Close() {
	s.http.Close()
	_ = s.server.Close()
}

// VerifyStatus calls GET /v1/verify with the credentials, once, and returns the
// HTTP status (-1 when there was no answer).
func (s *TokenService) VerifyStatus(ctx context.Context, creds backend.Credentials, scope string) int {
	return VerifyStatus(ctx, s.URL, creds, scope)
}

// VerifyStatus calls GET /v1/verify on the backend at url, once, and returns the
// HTTP status (-1 when there was no answer).
func VerifyStatus(ctx context.Context, url string, creds backend.Credentials, scope string) int {
	c, err := backend.New(backend.Options{URL: url, MaxAttempts: 1})
	if err != nil {
		return -1
	}
	err = c.Verify(ctx, creds, scope)
	if err == nil {
		return http.StatusOK
	}
	if apiErr, ok := errors.AsType[*backend.APIError](err); ok {
		return apiErr.StatusCode
	}
	return -1
}

// CredentialsOf reads the SID and auth token out of a token Secret where the
// operator puts them by default: username and password in a basic-auth
// Secret, accountSid and authToken in any other.
func CredentialsOf(s *corev1.Secret) backend.Credentials {
	if s.Type == corev1.SecretTypeBasicAuth {
		return CredentialsAt(s, corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
	}
	return CredentialsAt(s, tokensv1alpha1.DefaultAccountSIDKey, tokensv1alpha1.DefaultAuthTokenKey)
}

// CredentialsAt reads the SID and auth token out of a token Secret under the
// given keys (an ApiToken's spec.secret.accountSidKey and authTokenKey).
func CredentialsAt(s *corev1.Secret, sidKey, tokenKey string) backend.Credentials {
	return backend.Credentials{AccountSID: string(s.Data[sidKey]), AuthToken: backend.AuthToken(s.Data[tokenKey])}
}

// IssuedTokens records every auth token a backend answers with.
type IssuedTokens struct {
	mu     sync.Mutex
	tokens []string
}

// Capture passes requests to next and records the authToken of every answer.
func (i *IssuedTokens) Capture(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body struct {
			AuthToken string `json:"authToken"`
		}
		if json.Unmarshal(rec.Body.Bytes(), &body) == nil && body.AuthToken != "" {
			i.mu.Lock()
			i.tokens = append(i.tokens, body.AuthToken)
			i.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// All returns the tokens recorded so far.
func (i *IssuedTokens) All() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]string(nil), i.tokens...)
}
