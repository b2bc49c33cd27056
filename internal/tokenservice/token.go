package tokenservice

import (
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"time"
)

// Token states.
const (
	StateEnabled  = "Enabled"
	StateDisabled = "Disabled"
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

// Token is a token as the API shows it: everything but its auth token.
type Token struct {
	SID             string    `json:"sid"`
	ExternalID      string    `json:"externalId"`
	Name            string    `json:"name"`
	Description     string    `json:"description"`
	APIVersion      int       `json:"apiVersion"`
	PrimaryContact  string    `json:"primaryContact"`
	DeveloperEmails []string  `json:"developerEmails"`
	Scopes          []string  `json:"scopes"`
	State           string    `json:"state"`
	Generation      int64     `json:"generation"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

// record is a token as stored: with its auth token and a revision that changes on
// every write (the ETag).
type record struct {
	Token
	AuthToken string `json:"authToken"`
	Revision  uint64 `json:"revision"`
}

func (r *record) etag() string { return fmt.Sprintf(`"%s-%d"`, r.SID, r.Revision) }

// Credentials is the response of the credentials and reset calls.
type Credentials struct {
	AccountSID string `json:"accountSid"`
	AuthToken  string `json:"authToken"`
	Generation int64  `json:"generation"`
}

// createdToken is the create response: the token plus its auth token.
type createdToken struct {
	Token
	AuthToken string `json:"authToken"`
}

// createRequest is the body of POST /v1/tokens.
type createRequest struct {
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	APIVersion      *int     `json:"apiVersion,omitempty"`
	PrimaryContact  string   `json:"primaryContact"`
	DeveloperEmails []string `json:"developerEmails"`
	Scopes          []string `json:"scopes"`
	State           string   `json:"state"`
	ExternalID      string   `json:"externalId"`
}

// validateToken checks the settable fields of t against the catalog.
func validateToken(t *Token, c Catalog) []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
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
	if t.State != StateEnabled && t.State != StateDisabled {
		add("state", "must be %s or %s", StateEnabled, StateDisabled)
	}
	return errs
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// normalizeSet sorts a list and removes duplicates: scopes and e-mails are sets.
func normalizeSet(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}
