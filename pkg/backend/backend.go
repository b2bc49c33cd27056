// Package backend owns the narrow Backend interface that every backend type
// implements, the Capabilities each type states, the sentinel errors and the
// redacting AuthToken type; and it is the client of the Token Service API v1
// (Client): with pkg/backend/hydra, the only code of apitoken-operator that talks
// HTTP to a token backend. It must not import anything else of this repository
// (controllers, api, internal, test). docs/backends.md explains how to add a type.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Backend is the narrow seam between the controller and a token service.
//
// Contract:
//   - Every call is safe to repeat. Create and Reset carry an idempotency key: a
//     repeat with the same key returns the first result instead of acting twice.
//     Get and Update are conditional (ETag), Delete of a missing token is ErrNotFound.
//   - Each call runs under its own timeout and is retried with backoff on 429 (after
//     Retry-After), 5xx and network errors, within the caller's context.
//   - Failures wrap one of the sentinel errors below; test them with errors.Is.
//     Error texts never contain an auth token or the admin key.
type Backend interface {
	// Capabilities states what this backend type can do; it never changes.
	Capabilities() Capabilities
	// Catalog returns the API versions, scopes and contacts of the account.
	Catalog(ctx context.Context) (*Catalog, error)
	// Create creates a token. idempotencyKey makes a repeat return the same token.
	// A type whose Capabilities lack ServerChosenSID takes the SID from req.SID,
	// and one that lacks RetrievableSecrets takes the auth token from
	// req.AuthToken: the ID and the secret are then the key of the repeat.
	Create(ctx context.Context, idempotencyKey string, req CreateRequest) (*Token, Credentials, error)
	// FindByExternalID returns the tokens created with this external id.
	FindByExternalID(ctx context.Context, externalID string) ([]Token, error)
	// Get returns the token. With a non-empty etag that still matches, it returns
	// (nil, false, nil): the caller's copy is current.
	Get(ctx context.Context, sid, etag string) (tok *Token, modified bool, err error)
	// Update applies the non-nil fields of patch if the token still has etag
	// (empty etag: unconditionally). A stale etag is ErrPreconditionFailed. Setting
	// ExternalID claims a token that has none (an adoption); on a token that has
	// another one it is ErrConflict, which a retry cannot cure.
	Update(ctx context.Context, sid, etag string, patch TokenPatch) (*Token, error)
	// Credentials returns the token's current SID and auth token. A type that
	// lacks RetrievableSecrets answers ErrUnsupported.
	Credentials(ctx context.Context, sid string) (Credentials, error)
	// Reset issues a new auth token; the old one stops working at once. A type
	// that lacks RetrievableSecrets sets next, the secret the caller generated and
	// wrote ahead; the others issue their own and ignore next.
	Reset(ctx context.Context, sid, idempotencyKey string, next AuthToken) (Credentials, error)
	// SecretAccepted reports whether secret is the token's live secret, asked of
	// the backend's own data plane. After a crash between writing a generated
	// secret ahead and learning the answer, it tells which secret is live.
	SecretAccepted(ctx context.Context, sid string, secret AuthToken) (bool, error)
	// Delete removes the token for good.
	Delete(ctx context.Context, sid string) error
}

// Sentinel errors. An *APIError wraps exactly one of them.
var (
	ErrNotFound           = errors.New("not found")
	ErrInvalid            = errors.New("invalid")
	ErrConflict           = errors.New("conflict")
	ErrUnauthorized       = errors.New("unauthorized")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrRateLimited        = errors.New("rate limited")
	ErrUnavailable        = errors.New("backend unavailable")
	// ErrUnsupported is a call the backend type cannot make (see Capabilities).
	ErrUnsupported = errors.New("not supported by this backend type")
)

// Capabilities are what a backend type can do, stated once per type. The
// controller branches on them, never on the type's name.
type Capabilities struct {
	// ConditionalReads: Get with an ETag is answered "unchanged" by the backend
	// itself, without the token's body. Without it every read costs a full GET
	// (the type may still compare versions locally).
	ConditionalReads bool
	// RetrievableSecrets: Credentials returns the live auth token, and Create and
	// Reset issue it. Without it the caller generates every secret, writes it
	// ahead into storage of its own, and passes it to Create and Reset; the
	// backend never returns it.
	RetrievableSecrets bool
	// InPlaceReset: Reset keeps the SID. Without it a reset is a rotation without
	// overlap (a new token, the old one deleted).
	InPlaceReset bool
	// Disable: a token can be disabled and enabled again with its credentials.
	Disable bool
	// Catalog: Catalog lists the API versions, scopes and contacts the backend
	// accepts. Without it Catalog only checks that the backend answers, and the
	// TokenBackend's policy is the only rule.
	Catalog bool
	// Claim: Update can set the ExternalID of a token that has none (adoption).
	Claim bool
	// ServerChosenSID: the backend picks each token's SID. Without it the caller
	// chooses it (CreateRequest.SID), which makes a repeated create land on the
	// same token.
	ServerChosenSID bool
}

// State says whether a backend token accepts requests made with it.
type State string

// Token states.
const (
	// StateEnabled accepts requests made with the token.
	StateEnabled State = "Enabled"
	// StateDisabled rejects every request made with the token; its credentials
	// work again when it is enabled.
	StateDisabled State = "Disabled"
)

// Token is a backend token without its auth token.
type Token struct {
	SID             string    `json:"sid"`
	ExternalID      string    `json:"externalId"`
	Name            string    `json:"name"`
	Description     string    `json:"description"`
	APIVersion      int       `json:"apiVersion"`
	PrimaryContact  string    `json:"primaryContact"`
	DeveloperEmails []string  `json:"developerEmails"`
	Scopes          []string  `json:"scopes"`
	State           State     `json:"state"`
	Generation      int64     `json:"generation"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
	// ETag identifies this version for conditional calls; from the ETag header.
	ETag string `json:"-"`
}

// CreateRequest is the body of a create call.
type CreateRequest struct {
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	APIVersion      *int     `json:"apiVersion,omitempty"`
	PrimaryContact  string   `json:"primaryContact"`
	DeveloperEmails []string `json:"developerEmails"`
	Scopes          []string `json:"scopes"`
	State           State    `json:"state"`
	ExternalID      string   `json:"externalId"`
	// SID is the SID the caller chose, for a type without ServerChosenSID.
	SID string `json:"-"`
	// AuthToken is the secret the caller generated and wrote ahead, for a type
	// without RetrievableSecrets.
	AuthToken AuthToken `json:"-"`
}

// NormalizeSet returns a list in the form the API keeps a set in (a token's
// scopes and developer e-mails): sorted, without duplicates, and empty rather
// than nil, so that it encodes as [] and not null. The server stores sets in this
// form, and a client that normalizes what it wants can compare it with what the
// server returns as plain slices.
func NormalizeSet(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// TokenPatch holds the fields to change; nil fields are left alone.
type TokenPatch struct {
	Name            *string   `json:"name,omitempty"`
	Description     *string   `json:"description,omitempty"`
	APIVersion      *int      `json:"apiVersion,omitempty"`
	PrimaryContact  *string   `json:"primaryContact,omitempty"`
	DeveloperEmails *[]string `json:"developerEmails,omitempty"`
	Scopes          *[]string `json:"scopes,omitempty"`
	State           *State    `json:"state,omitempty"`
	// ExternalID may only be set on a token that has none, or to the one it has.
	ExternalID *string `json:"externalId,omitempty"`
}

// IsEmpty reports whether the patch changes nothing.
func (p TokenPatch) IsEmpty() bool { return p == TokenPatch{} }

// Credentials are a token's SID and auth token.
type Credentials struct {
	AccountSID string    `json:"accountSid"`
	AuthToken  AuthToken `json:"authToken"`
	Generation int64     `json:"generation"`
	// ETag is the token's version after a reset, when the backend sends one.
	ETag string `json:"-"`
}

// AuthToken is a token's secret. It prints, marshals and logs as a redaction so
// that it cannot leak by accident; Reveal returns the value for the Secret.
type AuthToken string

const redacted = "[REDACTED]"

// Reveal returns the secret value.
func (t AuthToken) Reveal() string { return string(t) }

func (t AuthToken) String() string               { return redacted }
func (t AuthToken) GoString() string             { return redacted }
func (t AuthToken) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (t AuthToken) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Format covers every fmt verb, %q and %x included.
func (t AuthToken) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// Catalog is what the backend account offers.
type Catalog struct {
	APIVersions      []int     `json:"apiVersions"`
	LatestAPIVersion int       `json:"latestApiVersion"`
	Scopes           []Scope   `json:"scopes"`
	Contacts         []Contact `json:"contacts"`
}

// Scope is one access permission.
type Scope struct {
	Name        string `json:"name"`
	Category    string `json:"category"`
	Description string `json:"description"`
}

// Contact is a user of the account.
type Contact struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// FieldError is one invalid field named by a 422 response.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// APIError is a failed call: the HTTP status, the problem document's type and
// title, and for 422 the names of the invalid fields. It wraps the matching
// sentinel error.
//
// A backend's texts are untrusted: one could echo a secret. Error and InvalidFields
// therefore print only the call, the status and the field names; Title, Type and
// the field details are kept for programs, never printed.
type APIError struct {
	Call       string
	StatusCode int
	Type       string
	Title      string
	Fields     []FieldError
	RetryAfter time.Duration
	sentinel   error
	// local is true when this client wrote Title itself (transport and decoding
	// failures), so that it is safe to print.
	local bool
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: HTTP %d", e.Call, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		fmt.Fprintf(&b, " %s", text)
	}
	if e.local {
		fmt.Fprintf(&b, " (%s)", e.Title)
	}
	if len(e.Fields) > 0 {
		fmt.Fprintf(&b, "; invalid: %s", e.InvalidFields())
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.sentinel }

// NewAPIError builds the error a Client returns for an answer with this status:
// the sentinel follows the status as in a real call, so that callers' tests can
// classify realistic errors without a server.
func NewAPIError(call string, status int, fields []FieldError, retryAfter time.Duration) *APIError {
	return &APIError{Call: call, StatusCode: status, Title: http.StatusText(status), Fields: fields, RetryAfter: retryAfter, sentinel: sentinelFor(status)}
}

// InvalidFields lists the names of the invalid fields, e.g. "scopes[1], primaryContact",
// and nothing of what the backend said about them.
func (e *APIError) InvalidFields() string {
	names := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		names[i] = f.Field
	}
	return strings.Join(names, ", ")
}

// RetryAfterOf returns how long the backend asked the caller to wait, if it did.
func RetryAfterOf(err error) time.Duration {
	if e, ok := errors.AsType[*APIError](err); ok {
		return e.RetryAfter
	}
	return 0
}
