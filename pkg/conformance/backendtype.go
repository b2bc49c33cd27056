package conformance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// BackendTarget is a backend type under test through the operator's own
// interface, backend.Backend: the cases that apply to what its Capabilities say.
// Where Run checks the Token Service API over HTTP, RunBackendType checks what
// the operator relies on of every type (docs/backends.md).
type BackendTarget struct {
	// Backend is the type's implementation, connected to a real server.
	Backend backend.Backend
	// Accepts asks the server's data plane whether sid and secret authenticate
	// an enabled token: the Token Service's verify, Hydra's token endpoint.
	Accepts func(ctx context.Context, sid string, secret backend.AuthToken) (bool, error)
	// Scopes are two or more scopes a token may hold.
	Scopes []string
	// Contact is a primary contact the server accepts.
	Contact string
}

var backendSeq atomic.Int64

// RunBackendType runs the backend-type conformance cases against target.
func RunBackendType(t *testing.T, target BackendTarget) {
	if len(target.Scopes) < 2 {
		t.Fatal("conformance: the target needs two scopes")
	}
	caps := target.Backend.Capabilities()
	h := &typeHarness{t: t, b: target.Backend, target: target, caps: caps}
	t.Run("catalog", h.catalog)
	t.Run("create, read, find", h.createReadFind)
	t.Run("a repeated create lands on the same token", h.repeatedCreate)
	t.Run("update and stale versions", h.update)
	t.Run("credentials", h.credentials)
	if caps.InPlaceReset {
		t.Run("reset in place", h.reset)
	}
	if caps.Disable {
		t.Run("disable and enable", h.disable)
	}
	if caps.Claim {
		t.Run("claim", h.claim)
	}
	t.Run("delete", h.delete)
}

type typeHarness struct {
	t      *testing.T
	b      backend.Backend
	target BackendTarget
	caps   backend.Capabilities
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// secret is one the caller generates, for a type without RetrievableSecrets.
func secret(t *testing.T) backend.AuthToken {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return backend.AuthToken(base64.RawURLEncoding.EncodeToString(b))
}

// request is a create request; the SID and secret are chosen here when the
// type lets the caller choose them.
func (h *typeHarness) request(t *testing.T, externalID string) backend.CreateRequest {
	n := strconv.FormatInt(backendSeq.Add(1), 10)
	req := backend.CreateRequest{
		Name: "conformance " + n, Description: "made by the backend-type conformance suite",
		PrimaryContact: h.target.Contact, DeveloperEmails: []string{}, Scopes: []string{h.target.Scopes[0]},
		State: backend.StateEnabled, ExternalID: externalID,
	}
	if !h.caps.ServerChosenSID {
		req.SID = "conformance-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + n
	}
	if !h.caps.RetrievableSecrets {
		req.AuthToken = secret(t)
	}
	return req
}

func (h *typeHarness) create(t *testing.T, externalID string) (*backend.Token, backend.Credentials, backend.CreateRequest) {
	t.Helper()
	req := h.request(t, externalID)
	key := "conformance/" + req.Name
	tok, creds, err := h.b.Create(ctxOf(t), key, req)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = h.b.Delete(context.Background(), tok.SID) })
	return tok, creds, req
}

func (h *typeHarness) accepts(t *testing.T, sid string, secret backend.AuthToken) bool {
	t.Helper()
	ok, err := h.target.Accepts(ctxOf(t), sid, secret)
	if err != nil {
		t.Fatalf("data plane: %v", err)
	}
	return ok
}

func (h *typeHarness) catalog(t *testing.T) {
	c, err := h.b.Catalog(ctxOf(t))
	if err != nil {
		t.Fatalf("catalog: %v", err)
	}
	if h.caps.Catalog != (len(c.Scopes) > 0) {
		t.Errorf("catalog has %d scopes; Capabilities.Catalog is %v", len(c.Scopes), h.caps.Catalog)
	}
}

func (h *typeHarness) createReadFind(t *testing.T) {
	owner := "conformance-owner-" + strconv.FormatInt(backendSeq.Add(1), 10)
	tok, creds, req := h.create(t, owner)
	if !h.caps.ServerChosenSID && tok.SID != req.SID {
		t.Errorf("SID %q, want the chosen %q", tok.SID, req.SID)
	}
	if creds.AccountSID != tok.SID || !h.accepts(t, tok.SID, creds.AuthToken) {
		t.Fatalf("the new token's credentials do not authenticate")
	}
	got, modified, err := h.b.Get(ctxOf(t), tok.SID, "")
	if err != nil || !modified {
		t.Fatalf("get: %v (modified %v)", err, modified)
	}
	if got.Name != req.Name || got.Description != req.Description || got.ExternalID != owner ||
		got.PrimaryContact != req.PrimaryContact || !slices.Equal(got.Scopes, req.Scopes) || got.State != backend.StateEnabled {
		t.Errorf("read back %+v, want the fields of %+v", got, req)
	}
	if _, modified, err := h.b.Get(ctxOf(t), tok.SID, got.ETag); err != nil || modified {
		t.Errorf("get with the current ETag: modified %v, %v; want unchanged", modified, err)
	}
	found, err := h.b.FindByExternalID(ctxOf(t), owner)
	if err != nil || len(found) != 1 || found[0].SID != tok.SID {
		t.Errorf("find by external id: %v, %v; want exactly %s", found, err, tok.SID)
	}
}

func (h *typeHarness) repeatedCreate(t *testing.T) {
	owner := "conformance-repeat-" + strconv.FormatInt(backendSeq.Add(1), 10)
	req := h.request(t, owner)
	key := "conformance/repeat/" + owner
	first, creds, err := h.b.Create(ctxOf(t), key, req)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = h.b.Delete(context.Background(), first.SID) })
	again, againCreds, err := h.b.Create(ctxOf(t), key, req)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if again.SID != first.SID || againCreds.AuthToken.Reveal() != creds.AuthToken.Reveal() {
		t.Errorf("the repeat made another token or secret: %s", again.SID)
	}
	found, err := h.b.FindByExternalID(ctxOf(t), owner)
	if err != nil || len(found) != 1 {
		t.Errorf("after a repeat, %d tokens carry the external id (%v); want 1", len(found), err)
	}
	if !h.accepts(t, first.SID, creds.AuthToken) {
		t.Error("the secret does not authenticate after the repeat")
	}
}

func (h *typeHarness) update(t *testing.T) {
	tok, _, _ := h.create(t, "conformance-update-"+strconv.FormatInt(backendSeq.Add(1), 10))
	name, scopes := "renamed", []string{h.target.Scopes[0], h.target.Scopes[1]}
	updated, err := h.b.Update(ctxOf(t), tok.SID, tok.ETag, backend.TokenPatch{Name: &name, Scopes: &scopes})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	got, _, err := h.b.Get(ctxOf(t), tok.SID, "")
	if err != nil || got.Name != name || !slices.Equal(got.Scopes, backend.NormalizeSet(scopes)) {
		t.Errorf("read back %+v, %v; want the update", got, err)
	}
	if updated.ETag == tok.ETag {
		t.Error("the update kept the ETag")
	}
	desc := "stale"
	if _, err := h.b.Update(ctxOf(t), tok.SID, tok.ETag, backend.TokenPatch{Description: &desc}); !errors.Is(err, backend.ErrPreconditionFailed) {
		t.Errorf("update with a stale ETag: %v, want ErrPreconditionFailed", err)
	}
}

func (h *typeHarness) credentials(t *testing.T) {
	tok, creds, _ := h.create(t, "conformance-creds-"+strconv.FormatInt(backendSeq.Add(1), 10))
	got, err := h.b.Credentials(ctxOf(t), tok.SID)
	if !h.caps.RetrievableSecrets {
		if !errors.Is(err, backend.ErrUnsupported) {
			t.Errorf("credentials of a type without RetrievableSecrets: %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil || got.AuthToken.Reveal() != creds.AuthToken.Reveal() {
		t.Errorf("credentials: %v; want the create's", err)
	}
}

func (h *typeHarness) reset(t *testing.T) {
	tok, old, _ := h.create(t, "conformance-reset-"+strconv.FormatInt(backendSeq.Add(1), 10))
	next := backend.AuthToken("")
	if !h.caps.RetrievableSecrets {
		next = secret(t)
	}
	key := "conformance/reset/" + tok.SID
	creds, err := h.b.Reset(ctxOf(t), tok.SID, key, next)
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	if creds.AccountSID != tok.SID || creds.Generation != tok.Generation+1 {
		t.Errorf("reset answered %s generation %d; want %s generation %d", creds.AccountSID, creds.Generation, tok.SID, tok.Generation+1)
	}
	if !h.accepts(t, tok.SID, creds.AuthToken) || h.accepts(t, tok.SID, old.AuthToken) {
		t.Error("after a reset the new secret must authenticate and the old one must not")
	}
	live, err := h.b.SecretAccepted(ctxOf(t), tok.SID, creds.AuthToken)
	if err != nil || !live {
		t.Errorf("SecretAccepted(new) = %v, %v; want true", live, err)
	}
	if live, err := h.b.SecretAccepted(ctxOf(t), tok.SID, old.AuthToken); err != nil || live {
		t.Errorf("SecretAccepted(old) = %v, %v; want false", live, err)
	}
	again, err := h.b.Reset(ctxOf(t), tok.SID, key, next)
	if err != nil || again.Generation != creds.Generation || again.AuthToken.Reveal() != creds.AuthToken.Reveal() {
		t.Errorf("a repeated reset acted again: generation %d, %v", again.Generation, err)
	}
}

func (h *typeHarness) disable(t *testing.T) {
	tok, creds, _ := h.create(t, "conformance-disable-"+strconv.FormatInt(backendSeq.Add(1), 10))
	off, on := backend.StateDisabled, backend.StateEnabled
	if _, err := h.b.Update(ctxOf(t), tok.SID, "", backend.TokenPatch{State: &off}); err != nil {
		t.Fatalf("disable: %v", err)
	}
	if got, _, err := h.b.Get(ctxOf(t), tok.SID, ""); err != nil || got.State != backend.StateDisabled {
		t.Errorf("read back after disable: %+v, %v", got, err)
	}
	if h.accepts(t, tok.SID, creds.AuthToken) {
		t.Error("a disabled token authenticates")
	}
	if _, err := h.b.Update(ctxOf(t), tok.SID, "", backend.TokenPatch{State: &on}); err != nil {
		t.Fatalf("enable: %v", err)
	}
	if !h.accepts(t, tok.SID, creds.AuthToken) {
		t.Error("an enabled token's credentials do not authenticate again")
	}
}

func (h *typeHarness) claim(t *testing.T) {
	tok, _, _ := h.create(t, "")
	owner := "conformance-claim-" + strconv.FormatInt(backendSeq.Add(1), 10)
	if _, err := h.b.Update(ctxOf(t), tok.SID, "", backend.TokenPatch{ExternalID: &owner}); err != nil {
		t.Fatalf("claim: %v", err)
	}
	other := owner + "-other"
	if _, err := h.b.Update(ctxOf(t), tok.SID, "", backend.TokenPatch{ExternalID: &other}); !errors.Is(err, backend.ErrConflict) {
		t.Errorf("claiming a claimed token: %v, want ErrConflict", err)
	}
	if got, _, err := h.b.Get(ctxOf(t), tok.SID, ""); err != nil || got.ExternalID != owner {
		t.Errorf("owner after the refused claim: %+v, %v", got, err)
	}
}

func (h *typeHarness) delete(t *testing.T) {
	tok, creds, _ := h.create(t, "conformance-delete-"+strconv.FormatInt(backendSeq.Add(1), 10))
	if err := h.b.Delete(ctxOf(t), tok.SID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, _, err := h.b.Get(ctxOf(t), tok.SID, ""); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if err := h.b.Delete(ctxOf(t), tok.SID); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if h.accepts(t, tok.SID, creds.AuthToken) {
		t.Error("a deleted token authenticates")
	}
}
