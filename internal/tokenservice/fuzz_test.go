package tokenservice

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

func fuzzServer(t testing.TB) *Server {
	s, err := New(Config{AdminKey: "fuzz"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serve(s *Server, method, path string, body []byte, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer fuzz")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// FuzzCreateToken feeds arbitrary bodies to POST /v1/tokens: the server must
// answer 201, 400 or 422 and never fail or panic.
func FuzzCreateToken(f *testing.F) {
	f.Add([]byte(`{"name":"x","primaryContact":"ops@example.com","scopes":["reports:read"]}`))
	f.Add([]byte(`{"name":"x","primaryContact":"ops@example.com","developerEmails":["a@b.c"],"apiVersion":12,"state":"Disabled"}`))
	f.Add([]byte(`{"name":5}`))
	f.Add([]byte(`{}{}`))
	f.Add([]byte(`null`))
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(s, http.MethodPost, "/v1/tokens", body, "Idempotency-Key", string(body))
		switch rec.Code {
		case http.StatusCreated, http.StatusBadRequest, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("create answered %d: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzPatchToken feeds arbitrary merge patches to PATCH /v1/tokens/{sid}: the
// server answers 200, 400, 422, or 409 for a change of the external id once a patch
// has claimed the token, and a token that it accepts stays valid.
func FuzzPatchToken(f *testing.F) {
	f.Add([]byte(`{"scopes":["reports:read","actions:write"]}`))
	f.Add([]byte(`{"description":null,"developerEmails":null}`))
	f.Add([]byte(`{"apiVersion":12}`))
	f.Add([]byte(`{"state":"Disabled","name":"y"}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"externalId":"uid-1"}`))
	f.Add([]byte(`{"externalId":null,"name":"z"}`))
	s := fuzzServer(f)
	created := serve(s, http.MethodPost, "/v1/tokens", []byte(`{"name":"x","primaryContact":"ops@example.com"}`), "Idempotency-Key", "seed")
	if created.Code != http.StatusCreated {
		f.Fatalf("seed token: %d", created.Code)
	}
	var sid string
	for k := range s.store.tokens {
		sid = k
	}
	current := func() backend.Token {
		s.store.mu.Lock()
		defer s.store.mu.Unlock()
		return s.store.tokens[sid].Token
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := current()
		rec := serve(s, http.MethodPatch, "/v1/tokens/"+sid, body)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusConflict:
		default:
			t.Fatalf("patch answered %d: %s", rec.Code, rec.Body)
		}
		tok := current()
		if errs := validateToken(&tok, s.catalog); len(errs) > 0 {
			t.Fatalf("an accepted patch left an invalid token: %v", errs)
		}
		if before.ExternalID != "" && tok.ExternalID != before.ExternalID {
			t.Fatalf("a patch changed the claimed external id %q to %q", before.ExternalID, tok.ExternalID)
		}
	})
}

// FuzzVerify feeds arbitrary Authorization headers and scopes to the data plane.
func FuzzVerify(f *testing.F) {
	f.Add("Basic VEsxOnNlY3JldA==", "reports:read")
	f.Add("Bearer x", "")
	f.Add("Basic !!!", "a:b")
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, auth, scope string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/verify", nil)
		q := req.URL.Query()
		q.Set("scope", scope)
		req.URL.RawQuery = q.Encode()
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("verify with no valid token answered %d", rec.Code)
		}
	})
}
