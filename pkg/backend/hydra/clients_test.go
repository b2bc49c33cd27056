package hydra

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

func TestCreateGetRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		req  backend.CreateRequest
		want backend.Token // without SID, times and ETag
	}{
		{
			name: "every field, enabled",
			req: backend.CreateRequest{
				Name: "Reports reader", Description: "reads the reports", APIVersion: ptr(15),
				PrimaryContact: "owner@example.com", DeveloperEmails: []string{"z@example.com", "a@example.com", "a@example.com"},
				Scopes: []string{"reports:write", "reports:read"}, State: backend.StateEnabled, ExternalID: "uid-roundtrip-1",
			},
			want: backend.Token{
				ExternalID: "uid-roundtrip-1", Name: "Reports reader", Description: "reads the reports", APIVersion: 15,
				PrimaryContact: "owner@example.com", DeveloperEmails: []string{"a@example.com", "z@example.com"},
				Scopes: []string{"reports:read", "reports:write"}, State: backend.StateEnabled, Generation: 1,
			},
		},
		{
			name: "disabled",
			req:  backend.CreateRequest{Name: "off", Scopes: []string{"a:read"}, State: backend.StateDisabled, ExternalID: "uid-roundtrip-2"},
			want: backend.Token{ExternalID: "uid-roundtrip-2", Name: "off", DeveloperEmails: []string{}, Scopes: []string{"a:read"},
				State: backend.StateDisabled, Generation: 1},
		},
		{
			name: "no scopes, no contacts, default state",
			req:  backend.CreateRequest{ExternalID: "uid-roundtrip-3"},
			want: backend.Token{ExternalID: "uid-roundtrip-3", DeveloperEmails: []string{}, Scopes: []string{},
				State: backend.StateEnabled, Generation: 1},
		},
		{
			name: "primary contact also a developer",
			req: backend.CreateRequest{PrimaryContact: "p@example.com", DeveloperEmails: []string{"p@example.com", "d@example.com"},
				Scopes: []string{"a:read"}, ExternalID: "uid-roundtrip-4"},
			want: backend.Token{ExternalID: "uid-roundtrip-4", PrimaryContact: "p@example.com",
				DeveloperEmails: []string{"d@example.com", "p@example.com"}, Scopes: []string{"a:read"},
				State: backend.StateEnabled, Generation: 1},
		},
		{
			name: "developers without a primary contact",
			req:  backend.CreateRequest{DeveloperEmails: []string{"d@example.com"}, Scopes: []string{"a:read"}, ExternalID: "uid-roundtrip-5"},
			want: backend.Token{ExternalID: "uid-roundtrip-5", DeveloperEmails: []string{"d@example.com"}, Scopes: []string{"a:read"},
				State: backend.StateEnabled, Generation: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, secret := newID(t), mustSecret(t)
			before := time.Now().Add(-2 * time.Second)
			created := create(t, id, tt.req, secret)
			want := tt.want
			want.SID = id
			if got := settings(created); !equalToken(got, want) {
				t.Errorf("create returned\n %+v\nwant\n %+v", got, want)
			}
			got, err := hc.GetClient(ctxFor(t), id)
			if err != nil {
				t.Fatal(err)
			}
			if !equalToken(*got, *created) || got.ETag != created.ETag {
				t.Errorf("get returned\n %+v\ncreate returned\n %+v", got, created)
			}
			after := time.Now().Add(2 * time.Second)
			for name, ts := range map[string]time.Time{"createdAt": got.CreatedAt, "updatedAt": got.UpdatedAt} {
				if ts.Before(before) || ts.After(after) {
					t.Errorf("%s %v is not about now", name, ts)
				}
			}
			again, err := hc.GetClient(ctxFor(t), id)
			if err != nil || again.ETag != got.ETag {
				t.Errorf("two reads of an unchanged client: ETags %s and %s (%v)", got.ETag, again.ETag, err)
			}
			status, code, _ := tokenGrant(t, id, secret, "")
			if tt.want.State == backend.StateEnabled && status != http.StatusOK {
				t.Errorf("enabled client: token endpoint HTTP %d %s", status, code)
			}
			if tt.want.State == backend.StateDisabled && (status != http.StatusBadRequest || code != "unauthorized_client") {
				t.Errorf("disabled client: token endpoint HTTP %d %s, want 400 unauthorized_client", status, code)
			}
		})
	}

	t.Run("hydra fields", func(t *testing.T) {
		id := newID(t)
		create(t, id, tests[0].req, mustSecret(t))
		raw := rawClient(t, id)
		want := map[string]any{
			"client_id":                  id,
			"owner":                      "uid-roundtrip-1",
			"client_name":                "Reports reader",
			"contacts":                   []any{"owner@example.com", "a@example.com", "z@example.com"},
			"scope":                      "reports:read reports:write",
			"grant_types":                []any{"client_credentials"},
			"token_endpoint_auth_method": "client_secret_basic",
			"metadata":                   map[string]any{"description": "reads the reports", "primaryContact": "owner@example.com", "apiVersion": 15.0, "generation": 1.0},
		}
		for k, v := range want {
			if !jsonEqual(raw[k], v) {
				t.Errorf("hydra %s = %#v, want %#v", k, raw[k], v)
			}
		}
		if _, ok := raw["client_secret"]; ok {
			t.Error("GET returned client_secret")
		}
	})

	t.Run("an empty scope set holds no scope", func(t *testing.T) {
		id, secret := newID(t), mustSecret(t)
		create(t, id, backend.CreateRequest{ExternalID: "uid-noscope"}, secret)
		if got := rawClient(t, id)["scope"]; got != " " {
			t.Errorf("hydra scope %q, want a single space", got)
		}
		for _, scope := range []string{"openid", "offline_access", "a:read"} {
			if status, code, _ := tokenGrant(t, id, secret, scope); status != http.StatusBadRequest || code != "invalid_scope" {
				t.Errorf("scope %s: HTTP %d %s, want 400 invalid_scope", scope, status, code)
			}
		}
	})
}

func equalToken(a, b backend.Token) bool {
	return jsonEqual(a, b) && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func TestCreateIdempotentAndConflict(t *testing.T) {
	id, secret := newID(t), mustSecret(t)
	req := backend.CreateRequest{Name: "once", Scopes: []string{"a:read"}, ExternalID: "uid-idem"}
	first := create(t, id, req, secret)

	// A repeat (say after a lost answer) with the same owner returns the client as
	// it is, and leaves its secret alone.
	other := mustSecret(t)
	again, existed, err := hc.CreateClient(ctxFor(t), id, req, other)
	noSecret(t, err, secret, other)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if !existed || again.SID != id || again.ETag != first.ETag || again.Generation != 1 {
		t.Errorf("repeat returned %+v, want %+v", again, first)
	}
	if ok, err := hc.SecretAccepted(ctxFor(t), id, secret); err != nil || !ok {
		t.Errorf("first secret after a repeat: %v, %v; want true", ok, err)
	}

	// Another owner may not take the client ID.
	req.ExternalID = "uid-someone-else"
	_, _, err = hc.CreateClient(ctxFor(t), id, req, other)
	noSecret(t, err, secret, other)
	if !errors.Is(err, backend.ErrConflict) {
		t.Fatalf("other owner: got %v, want ErrConflict", err)
	}
	if got, _ := hc.GetClient(ctxFor(t), id); got == nil || got.ExternalID != "uid-idem" {
		t.Errorf("the client changed owner: %+v", got)
	}
}

func TestFindByOwner(t *testing.T) {
	owner, otherOwner := "uid-find-"+newID(t), "uid-find-other-"+newID(t)
	var mine []string
	for range 3 {
		id := newID(t)
		create(t, id, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: owner}, mustSecret(t))
		mine = append(mine, id)
	}
	create(t, newID(t), backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: otherOwner}, mustSecret(t))

	small := *hc
	small.pageSize = 2 // three clients take two pages
	for _, c := range []*Client{hc, &small} {
		toks, err := c.FindByOwner(ctxFor(t), owner)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tok := range toks {
			if tok.ExternalID != owner || tok.ETag == "" {
				t.Errorf("wrong token %+v", tok)
			}
			got = append(got, tok.SID)
		}
		slices.Sort(got)
		slices.Sort(mine)
		if !slices.Equal(got, mine) {
			t.Errorf("page size %d: found %v, want %v", c.pageSize, got, mine)
		}
	}
	if toks, err := hc.FindByOwner(ctxFor(t), otherOwner); err != nil || len(toks) != 1 {
		t.Errorf("other owner: %+v, %v; want one", toks, err)
	}
	if toks, err := hc.FindByOwner(ctxFor(t), "uid-nobody"); err != nil || toks == nil || len(toks) != 0 {
		t.Errorf("unknown owner: %#v, %v; want an empty list", toks, err)
	}
}

func TestUpdate(t *testing.T) {
	id, secret := newID(t), mustSecret(t)
	created := create(t, id, backend.CreateRequest{
		Name: "before", Description: "old", APIVersion: ptr(12), PrimaryContact: "p@example.com",
		DeveloperEmails: []string{"d1@example.com"}, Scopes: []string{"a:read", "b:read"}, ExternalID: "uid-update",
	}, secret)
	time.Sleep(5 * time.Millisecond) // updated_at has microseconds

	patch := backend.TokenPatch{
		Name: ptr("after"), Description: ptr("new"), APIVersion: ptr(16),
		PrimaryContact: ptr("q@example.com"), DeveloperEmails: ptr([]string{"d3@example.com", "d2@example.com"}),
		Scopes: ptr([]string{"c:write", "a:read"}),
	}
	updated, err := hc.UpdateClient(ctxFor(t), id, patch)
	if err != nil {
		t.Fatal(err)
	}
	want := backend.Token{SID: id, ExternalID: "uid-update", Name: "after", Description: "new", APIVersion: 16,
		PrimaryContact: "q@example.com", DeveloperEmails: []string{"d2@example.com", "d3@example.com"},
		Scopes: []string{"a:read", "c:write"}, State: backend.StateEnabled, Generation: 1}
	if !equalToken(settings(updated), want) {
		t.Errorf("update returned\n %+v\nwant\n %+v", settings(updated), want)
	}
	if updated.ETag == created.ETag || !updated.UpdatedAt.After(created.UpdatedAt) || !updated.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("ETag %s -> %s, updatedAt %v -> %v", created.ETag, updated.ETag, created.UpdatedAt, updated.UpdatedAt)
	}
	if got, err := hc.GetClient(ctxFor(t), id); err != nil || got.ETag != updated.ETag {
		t.Errorf("get after update: %+v, %v", got, err)
	}
	if c := rawClient(t, id)["contacts"]; !jsonEqual(c, []string{"q@example.com", "d2@example.com", "d3@example.com"}) {
		t.Errorf("hydra contacts %v", c)
	}
	if status, code, _ := tokenGrant(t, id, secret, "c:write"); status != http.StatusOK {
		t.Errorf("added scope: HTTP %d %s", status, code)
	}
	if status, code, _ := tokenGrant(t, id, secret, "b:read"); status != http.StatusBadRequest || code != "invalid_scope" {
		t.Errorf("removed scope: HTTP %d %s, want 400 invalid_scope", status, code)
	}

	t.Run("a patch that changes nothing writes nothing", func(t *testing.T) {
		for _, p := range []backend.TokenPatch{{}, patch, {Scopes: ptr([]string{"a:read", "c:write", "a:read"})}} {
			same, err := hc.UpdateClient(ctxFor(t), id, p)
			if err != nil || same.ETag != updated.ETag || !same.UpdatedAt.Equal(updated.UpdatedAt) {
				t.Errorf("patch %+v: %+v, %v; want no change", p, same, err)
			}
		}
	})

	t.Run("one field leaves the others", func(t *testing.T) {
		got, err := hc.UpdateClient(ctxFor(t), id, backend.TokenPatch{DeveloperEmails: ptr([]string{})})
		if err != nil {
			t.Fatal(err)
		}
		want := want
		want.DeveloperEmails = []string{}
		if !equalToken(settings(got), want) {
			t.Errorf("got\n %+v\nwant\n %+v", settings(got), want)
		}
		got, err = hc.UpdateClient(ctxFor(t), id, backend.TokenPatch{Scopes: ptr([]string{})})
		if err != nil || len(got.Scopes) != 0 || got.Name != "after" {
			t.Errorf("empty scopes: %+v, %v", got, err)
		}
	})

	t.Run("external id", func(t *testing.T) {
		unowned := newID(t)
		create(t, unowned, backend.CreateRequest{Scopes: []string{"a:read"}}, mustSecret(t))
		tests := []struct {
			owner   string
			wantErr error
		}{
			{"uid-claim", nil}, // claims a client without owner
			{"uid-claim", nil}, // the same owner again
			{"uid-thief", backend.ErrConflict},
		}
		for _, tt := range tests {
			got, err := hc.UpdateClient(ctxFor(t), unowned, backend.TokenPatch{ExternalID: ptr(tt.owner)})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("claim by %s: %v, want %v", tt.owner, err, tt.wantErr)
			}
			if err == nil && got.ExternalID != tt.owner {
				t.Errorf("claim by %s: owner %q", tt.owner, got.ExternalID)
			}
		}
		if got, _ := hc.GetClient(ctxFor(t), unowned); got == nil || got.ExternalID != "uid-claim" {
			t.Errorf("owner after a refused claim: %+v", got)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := hc.UpdateClient(ctxFor(t), newID(t), patch); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("unknown client: %v, want ErrNotFound", err)
		}
		if _, err := hc.UpdateClient(ctxFor(t), id, backend.TokenPatch{State: ptr(backend.State("Paused"))}); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("unknown state: %v, want ErrInvalid", err)
		}
		if _, err := hc.UpdateClient(ctxFor(t), id, backend.TokenPatch{Scopes: ptr([]string{"a read"})}); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("scope with a space: %v, want ErrInvalid", err)
		}
	})
}

func TestDisableEnable(t *testing.T) {
	id, secret := newID(t), mustSecret(t)
	create(t, id, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-disable"}, secret)
	issued := mustAccessToken(t, id, secret, "a:read")

	tok, err := hc.Disable(ctxFor(t), id)
	if err != nil || tok.State != backend.StateDisabled {
		t.Fatalf("disable: %+v, %v", tok, err)
	}
	if g := rawClient(t, id)["grant_types"]; !jsonEqual(g, []string{}) {
		t.Errorf("hydra grant_types %v, want []", g)
	}
	if status, code, _ := tokenGrant(t, id, secret, ""); status != http.StatusBadRequest || code != "unauthorized_client" {
		t.Errorf("disabled: HTTP %d %s, want 400 unauthorized_client", status, code)
	}
	if active(t, issued) {
		t.Error("an access token issued before disable is still active")
	}
	if ok, err := hc.SecretAccepted(ctxFor(t), id, secret); err != nil || !ok {
		t.Errorf("secret of a disabled client: %v, %v; want true", ok, err)
	}
	if ok, err := hc.SecretAccepted(ctxFor(t), id, mustSecret(t)); err != nil || ok {
		t.Errorf("wrong secret of a disabled client: %v, %v; want false", ok, err)
	}
	if again, err := hc.Disable(ctxFor(t), id); err != nil || again.ETag != tok.ETag {
		t.Errorf("second disable: %+v, %v; want no change", again, err)
	}

	tok, err = hc.Enable(ctxFor(t), id)
	if err != nil || tok.State != backend.StateEnabled {
		t.Fatalf("enable: %+v, %v", tok, err)
	}
	if status, code, _ := tokenGrant(t, id, secret, "a:read"); status != http.StatusOK {
		t.Errorf("enabled again: HTTP %d %s", status, code)
	}
	if got, err := hc.GetClient(ctxFor(t), id); err != nil || got.State != backend.StateEnabled {
		t.Errorf("get: %+v, %v", got, err)
	}
}

func TestSetSecret(t *testing.T) {
	id, oldSecret := newID(t), mustSecret(t)
	create(t, id, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-rotate"}, oldSecret)
	issued := mustAccessToken(t, id, oldSecret, "a:read")
	newSecret := mustSecret(t)

	if err := hc.SetSecret(ctxFor(t), id, newSecret, 2); err != nil {
		noSecret(t, err, oldSecret, newSecret)
		t.Fatal(err)
	}
	if status, code, _ := tokenGrant(t, id, oldSecret, ""); status != http.StatusUnauthorized || code != "invalid_client" {
		t.Errorf("old secret: HTTP %d %s, want 401 invalid_client", status, code)
	}
	if status, code, _ := tokenGrant(t, id, newSecret, "a:read"); status != http.StatusOK {
		t.Errorf("new secret: HTTP %d %s", status, code)
	}
	if active(t, issued) {
		t.Error("an access token issued with the old secret is still active")
	}
	tok, err := hc.GetClient(ctxFor(t), id)
	if err != nil || tok.Generation != 2 || tok.SID != id {
		t.Fatalf("get: %+v, %v; want generation 2", tok, err)
	}

	// A repeat (after a lost answer) writes the same state.
	if err := hc.SetSecret(ctxFor(t), id, newSecret, 2); err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if ok, err := hc.SecretAccepted(ctxFor(t), id, newSecret); err != nil || !ok {
		t.Errorf("new secret after a repeat: %v, %v", ok, err)
	}
	if tok, _ := hc.GetClient(ctxFor(t), id); tok == nil || tok.Generation != 2 {
		t.Errorf("generation after a repeat: %+v", tok)
	}

	err = hc.SetSecret(ctxFor(t), newID(t), newSecret, 2)
	noSecret(t, err, oldSecret, newSecret)
	if !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("unknown client: %v, want ErrNotFound", err)
	}
}

func TestSecretAccepted(t *testing.T) {
	id, secret := newID(t), mustSecret(t)
	create(t, id, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-accepted"}, secret)
	odd := backend.AuthToken("a+b%c:d/e=f g&h")
	oddID := newID(t)
	create(t, oddID, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-accepted"}, odd)

	tests := []struct {
		name   string
		id     string
		secret backend.AuthToken
		want   bool
	}{
		{"current secret", id, secret, true},
		{"wrong secret", id, mustSecret(t), false},
		{"unknown client", newID(t), secret, false},
		{"secret that needs form encoding", oddID, odd, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hc.SecretAccepted(ctxFor(t), tt.id, tt.secret)
			noSecret(t, err, tt.secret)
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestTokenEndpointRefusesMissingScope(t *testing.T) {
	id, secret := newID(t), mustSecret(t)
	create(t, id, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-scope"}, secret)
	tests := []struct {
		scope      string
		wantStatus int
		wantCode   string
	}{
		{"a:read", http.StatusOK, ""},
		{"", http.StatusOK, ""},
		{"a:write", http.StatusBadRequest, "invalid_scope"},
		{"a:read a:write", http.StatusBadRequest, "invalid_scope"},
		{"openid", http.StatusBadRequest, "invalid_scope"},
	}
	for _, tt := range tests {
		status, code, _ := tokenGrant(t, id, secret, tt.scope)
		if status != tt.wantStatus || code != tt.wantCode {
			t.Errorf("scope %q: HTTP %d %q, want %d %q", tt.scope, status, code, tt.wantStatus, tt.wantCode)
		}
	}
}

func TestDelete(t *testing.T) {
	id, secret := newID(t), mustSecret(t)
	create(t, id, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-delete"}, secret)
	issued := mustAccessToken(t, id, secret, "")

	if err := hc.DeleteClient(ctxFor(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.GetClient(ctxFor(t), id); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if err := hc.DeleteClient(ctxFor(t), id); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if active(t, issued) {
		t.Error("an access token of a deleted client is still active")
	}
	if status, code, _ := tokenGrant(t, id, secret, ""); status != http.StatusUnauthorized || code != "invalid_client" {
		t.Errorf("deleted client: HTTP %d %s, want 401 invalid_client", status, code)
	}
	if ok, err := hc.SecretAccepted(ctxFor(t), id, secret); err != nil || ok {
		t.Errorf("secret of a deleted client: %v, %v; want false", ok, err)
	}
	if toks, err := hc.FindByOwner(ctxFor(t), "uid-delete"); err != nil || len(toks) != 0 {
		t.Errorf("find after delete: %+v, %v", toks, err)
	}
}

func TestRevokeTokens(t *testing.T) {
	id, secret := newID(t), mustSecret(t)
	create(t, id, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-revoke"}, secret)
	a, b := mustAccessToken(t, id, secret, ""), mustAccessToken(t, id, secret, "a:read")
	otherID, otherSecret := newID(t), mustSecret(t)
	create(t, otherID, backend.CreateRequest{Scopes: []string{"a:read"}, ExternalID: "uid-revoke"}, otherSecret)
	other := mustAccessToken(t, otherID, otherSecret, "")

	if err := hc.RevokeTokens(ctxFor(t), id); err != nil {
		t.Fatal(err)
	}
	if active(t, a) || active(t, b) {
		t.Error("a revoked access token is still active")
	}
	if !active(t, other) {
		t.Error("another client's access token was revoked")
	}
	if status, _, _ := tokenGrant(t, id, secret, ""); status != http.StatusOK {
		t.Errorf("the client cannot get new tokens after a revocation: HTTP %d", status)
	}
	if err := hc.RevokeTokens(ctxFor(t), newID(t)); err != nil {
		t.Errorf("unknown client: %v, want nil (Hydra answers 204)", err)
	}
}

// TestSecretAcceptedRevokesProbeToken checks, against a fake token endpoint, that
// the access token a successful check obtains is revoked at once.
func TestSecretAcceptedRevokesProbeToken(t *testing.T) {
	secret := mustSecret(t)
	var revoked atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, pw, ok := r.BasicAuth()
		if !ok || id != "apitoken-x" || pw != secret.Reveal() {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		switch r.URL.Path {
		case "/oauth2/token":
			_, _ = io.WriteString(w, `{"access_token":"probe-token","token_type":"bearer"}`)
		case "/oauth2/revoke":
			_ = r.ParseForm()
			revoked.Store(r.PostForm.Get("token"))
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c, err := New(Options{AdminURL: srv.URL, TokenURL: srv.URL + "/oauth2/token"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.SecretAccepted(ctxFor(t), "apitoken-x", secret); err != nil || !ok {
		t.Fatalf("got %v, %v; want true", ok, err)
	}
	if got, _ := revoked.Load().(string); got != "probe-token" {
		t.Errorf("revoked %q, want the probe token", got)
	}
}
