package tokenservice

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Limits of the Token Service API, shared with the operator's admission rules.
const (
	MaxNameLength        = 100
	MaxDescriptionLength = 1024
	MaxDeveloperEmails   = 50
	MaxScopes            = 256
	MaxExternalIDLength  = 256
	MaxBodyBytes         = 1 << 20
)

var scopePattern = regexp.MustCompile(`^[a-z0-9-]+:[a-z0-9-]+$`)

// record is a token as stored: the token as the API shows it (pkg/backend's wire
// type, everything but the auth token), its auth token, and a revision that changes
// on every write. The token's ETag field stays empty here (it is not encoded):
// version derives it from the revision.
type record struct {
	backend.Token
	AuthToken string `json:"authToken"`
	Revision  uint64 `json:"revision"`
}

func (r *record) etag() string { return fmt.Sprintf(`"%s-%d"`, r.SID, r.Revision) }

// version is the token as of this revision, with the revision's ETag.
func (r *record) version() backend.Token {
	t := r.Token
	t.ETag = r.etag()
	return t
}

func (r *record) credentials() Credentials {
	return Credentials{AccountSID: r.SID, AuthToken: r.AuthToken, Generation: r.Generation}
}

// etagMatches reports whether an If-None-Match or If-Match header names etag.
func etagMatches(header, etag string) bool {
	for candidate := range strings.SplitSeq(header, ",") {
		candidate = strings.TrimPrefix(strings.TrimSpace(candidate), "W/")
		if candidate == "*" || candidate == etag {
			return true
		}
	}
	return false
}

func newSID() string       { return "TK" + randomHex(16) }
func newAuthToken() string { return randomHex(20) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// Credentials is the response of the credentials and reset calls. It is not
// pkg/backend's Credentials: that one encodes its auth token redacted, and the
// server has to send it.
type Credentials struct {
	AccountSID string `json:"accountSid"`
	AuthToken  string `json:"authToken"`
	Generation int64  `json:"generation"`
}

// createdToken is the create response: the token plus its auth token.
type createdToken struct {
	backend.Token
	AuthToken string `json:"authToken"`
}

// newToken is the new token that req (the body of POST /v1/tokens) asks for, with
// a new SID, generation 1 and the defaults: the latest API version, Enabled.
func newToken(req *backend.CreateRequest, latestAPIVersion int, now time.Time) backend.Token {
	t := backend.Token{
		SID: newSID(), ExternalID: req.ExternalID, Name: req.Name, Description: req.Description,
		APIVersion: latestAPIVersion, PrimaryContact: req.PrimaryContact,
		DeveloperEmails: backend.NormalizeSet(req.DeveloperEmails), Scopes: backend.NormalizeSet(req.Scopes),
		State: req.State, Generation: 1, CreatedAt: now, UpdatedAt: now,
	}
	if req.APIVersion != nil {
		t.APIVersion = *req.APIVersion
	}
	if t.State == "" {
		t.State = backend.StateEnabled
	}
	return t
}

// validateToken checks the settable fields of t against the catalog.
func validateToken(t *backend.Token, c Catalog) []backend.FieldError {
	var errs []backend.FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, backend.FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	if n := len([]rune(t.Name)); n < 1 || n > MaxNameLength {
		add("name", "must be 1 to %d characters", MaxNameLength)
	}
	if len([]rune(t.Description)) > MaxDescriptionLength {
		add("description", "must be at most %d characters", MaxDescriptionLength)
	}
	if len(t.ExternalID) > MaxExternalIDLength {
		add("externalId", "must be at most %d characters", MaxExternalIDLength)
	}
	if !slices.Contains(c.APIVersions, t.APIVersion) {
		add("apiVersion", "unknown API version %d (latest is %d)", t.APIVersion, c.LatestAPIVersion)
	}
	if !c.hasContact(t.PrimaryContact) {
		add("primaryContact", "%q is not a user of this account", t.PrimaryContact)
	}
	if len(t.DeveloperEmails) > MaxDeveloperEmails {
		add("developerEmails", "must hold at most %d addresses", MaxDeveloperEmails)
	}
	for i, e := range t.DeveloperEmails {
		if !validEmail(e) {
			add(fmt.Sprintf("developerEmails[%d]", i), "%q is not an e-mail address", e)
		}
	}
	if len(t.Scopes) > MaxScopes {
		add("scopes", "must hold at most %d scopes", MaxScopes)
	}
	for i, s := range t.Scopes {
		if !c.hasScope(s) {
			add(fmt.Sprintf("scopes[%d]", i), "unknown scope %q", s)
		}
	}
	if t.State != backend.StateEnabled && t.State != backend.StateDisabled {
		add("state", "must be %s or %s", backend.StateEnabled, backend.StateDisabled)
	}
	return errs
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// patched returns a copy of current with a JSON merge patch applied, and what is
// wrong with the patch itself: unknown or ill-typed members, a lower apiVersion.
// The result is not yet validated against the catalog.
func patched(current *record, patch map[string]json.RawMessage) (record, []backend.FieldError) {
	next := *current
	next.DeveloperEmails = slices.Clone(current.DeveloperEmails)
	next.Scopes = slices.Clone(current.Scopes)
	errs := applyMergePatch(&next.Token, patch)
	if next.APIVersion < current.APIVersion {
		errs = append(errs, backend.FieldError{Field: "apiVersion", Detail: fmt.Sprintf("may only rise: %d is below the current %d", next.APIVersion, current.APIVersion)})
	}
	return next, errs
}

// applyMergePatch applies the settable members of an RFC 7396 merge patch to t.
// null clears the optional fields; the required ones cannot be cleared.
func applyMergePatch(t *backend.Token, patch map[string]json.RawMessage) []backend.FieldError {
	var errs []backend.FieldError
	set := func(field string, raw json.RawMessage, dst any, clearable bool) {
		if string(raw) == "null" {
			if !clearable {
				errs = append(errs, backend.FieldError{Field: field, Detail: "is required and cannot be null"})
			}
			return
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			errs = append(errs, backend.FieldError{Field: field, Detail: "has the wrong type"})
		}
	}
	for field, raw := range patch {
		switch field {
		case "name":
			set(field, raw, &t.Name, false)
		case "description":
			t.Description = ""
			set(field, raw, &t.Description, true)
		case "apiVersion":
			set(field, raw, &t.APIVersion, false)
		case "primaryContact":
			set(field, raw, &t.PrimaryContact, false)
		case "developerEmails":
			t.DeveloperEmails = nil
			set(field, raw, &t.DeveloperEmails, true)
			t.DeveloperEmails = backend.NormalizeSet(t.DeveloperEmails)
		case "scopes":
			t.Scopes = nil
			set(field, raw, &t.Scopes, true)
			t.Scopes = backend.NormalizeSet(t.Scopes)
		case "state":
			set(field, raw, &t.State, false)
		case "externalId":
			// null clears it; whether it may change at all depends on the stored
			// token (store.Patch), not on the patch.
			t.ExternalID = ""
			set(field, raw, &t.ExternalID, true)
		default:
			errs = append(errs, backend.FieldError{Field: field, Detail: "is not a field that can be changed"})
		}
	}
	slices.SortFunc(errs, func(a, b backend.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return errs
}

func tokenSettingsEqual(a, b *backend.Token) bool {
	return a.ExternalID == b.ExternalID && a.Name == b.Name && a.Description == b.Description && a.APIVersion == b.APIVersion &&
		a.PrimaryContact == b.PrimaryContact && a.State == b.State &&
		slices.Equal(a.DeveloperEmails, b.DeveloperEmails) && slices.Equal(a.Scopes, b.Scopes)
}
