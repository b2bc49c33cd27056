package hydra

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// hydraClient is the part of Hydra's OAuth2 client that the mapping reads. The
// secret and registration access token of create and patch answers are not
// decoded.
type hydraClient struct {
	ClientID   string          `json:"client_id"`
	ClientName string          `json:"client_name"`
	Owner      string          `json:"owner"`
	Contacts   []string        `json:"contacts"`
	Scope      string          `json:"scope"`
	GrantTypes []string        `json:"grant_types"`
	Metadata   json.RawMessage `json:"metadata"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// Metadata keys.
const (
	metaDescription    = "description"
	metaPrimaryContact = "primaryContact"
	metaAPIVersion     = "apiVersion"
	metaGeneration     = "generation"
)

// meta is the operator's part of a client's metadata.
type meta struct {
	Description    string `json:"description,omitempty"`
	PrimaryContact string `json:"primaryContact,omitempty"`
	APIVersion     int    `json:"apiVersion,omitempty"`
	Generation     int64  `json:"generation,omitempty"`
}

// parseMeta reads the operator's keys and ignores the others; a key of the wrong
// type (a client edited by hand) reads as absent. isObject says whether metadata
// is a JSON object, so that a patch may add keys to it.
func parseMeta(raw json.RawMessage) (m meta, isObject bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return meta{}, false
	}
	_ = json.Unmarshal(obj[metaDescription], &m.Description)
	_ = json.Unmarshal(obj[metaPrimaryContact], &m.PrimaryContact)
	_ = json.Unmarshal(obj[metaAPIVersion], &m.APIVersion)
	_ = json.Unmarshal(obj[metaGeneration], &m.Generation)
	return m, true
}

// toToken maps a Hydra client to a Token and computes its ETag.
func toToken(hc *hydraClient) *backend.Token {
	m, _ := parseMeta(hc.Metadata)
	primary, devs := splitContacts(hc.Contacts, m.PrimaryContact)
	t := &backend.Token{
		SID:             hc.ClientID,
		ExternalID:      hc.Owner,
		Name:            hc.ClientName,
		Description:     m.Description,
		APIVersion:      m.APIVersion,
		PrimaryContact:  primary,
		DeveloperEmails: devs,
		Scopes:          backend.NormalizeSet(strings.Fields(hc.Scope)),
		State:           stateOf(hc.GrantTypes),
		Generation:      m.Generation,
		CreatedAt:       hc.CreatedAt.UTC(),
		UpdatedAt:       hc.UpdatedAt.UTC(),
	}
	t.ETag = ETagOf(*t)
	return t
}

// ETagOf returns the entity tag of a mapped token: the quoted hex SHA-256 of its
// JSON encoding without the ETag field.
func ETagOf(t backend.Token) string {
	t.ETag = ""
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	b, err := json.Marshal(t)
	if err != nil { // a Token always encodes
		panic(err)
	}
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// composeContacts is the contacts list: the primary contact first, then the
// developer e-mails as a set.
func composeContacts(primary string, devs []string) []string {
	out := []string{}
	if primary != "" {
		out = append(out, primary)
	}
	return append(out, backend.NormalizeSet(devs)...)
}

func splitContacts(contacts []string, primary string) (string, []string) {
	if primary != "" && len(contacts) > 0 && contacts[0] == primary {
		return primary, backend.NormalizeSet(contacts[1:])
	}
	return primary, backend.NormalizeSet(contacts)
}

// encodeScope is the scope string of a set; see the package doc for " ".
func encodeScope(scopes []string) (string, error) {
	set := backend.NormalizeSet(scopes)
	for _, s := range set {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return "", fmt.Errorf("hydra: %w: a scope is empty or holds a space, quote or backslash", backend.ErrInvalid)
		}
	}
	if len(set) == 0 {
		return emptyScope, nil
	}
	return strings.Join(set, " "), nil
}

func grantTypesFor(s backend.State) ([]string, error) {
	switch s {
	case backend.StateEnabled, "":
		return []string{grantClientCredentials}, nil
	case backend.StateDisabled:
		return []string{}, nil
	}
	return nil, fmt.Errorf("hydra: %w: unknown state %q", backend.ErrInvalid, s)
}

// stateOf reads grant_types: exactly ["client_credentials"] is Enabled, none is
// Disabled, and anything else (grant types added in Hydra) is stateEdited, which
// no desired state equals, so that the drift is reverted.
func stateOf(grantTypes []string) backend.State {
	switch {
	case len(grantTypes) == 0:
		return backend.StateDisabled
	case slices.Equal(grantTypes, []string{grantClientCredentials}):
		return backend.StateEnabled
	}
	return stateEdited
}

// stateEdited is the state of a client whose grant types were edited in Hydra.
const stateEdited backend.State = "GrantTypesEdited"

func checkClientID(call, id string) error {
	if !clientIDPattern.MatchString(id) {
		return fmt.Errorf("%s: %w: client id %q does not match %s", call, backend.ErrInvalid, id, clientIDPattern)
	}
	return nil
}

func checkSecret(call string, secret backend.AuthToken) error {
	if len(secret.Reveal()) < 6 { // Hydra's minimum
		return fmt.Errorf("%s: %w: the client secret must be at least 6 characters", call, backend.ErrInvalid)
	}
	return nil
}

func clientPath(id string) string { return "/admin/clients/" + url.PathEscape(id) }
