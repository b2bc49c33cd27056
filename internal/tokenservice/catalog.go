package tokenservice

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Catalog is what a token-service account offers: API versions, scopes (such as
// reports:read) and the account users who may be a token's primary contact. It is
// the wire type that GET /v1/catalog returns and pkg/backend decodes, with the
// checks this server makes against it.
type Catalog backend.Catalog

// demoCategories are impact.com's published API categories.
var demoCategories = []string{
	"accounts", "actions", "ads", "catalogs", "clicks", "contacts", "contracts", "conversions",
	"deals", "invoices", "jobs", "partners", "programs", "promo-codes", "reports", "tracking-links",
}

// DemoCatalog is the built-in catalog: read and write scopes for each impact.com API
// category, API versions 12 to 16, and two contacts.
func DemoCatalog() Catalog {
	c := Catalog{
		APIVersions:      []int{12, 13, 14, 15, 16},
		LatestAPIVersion: 16,
		Contacts: []backend.Contact{
			{Email: "admin@example.com", Name: "Account Admin"},
			{Email: "ops@example.com", Name: "Operations"},
		},
	}
	for _, category := range demoCategories {
		c.Scopes = append(c.Scopes,
			backend.Scope{Name: category + ":read", Category: category, Description: "Read " + category},
			backend.Scope{Name: category + ":write", Category: category, Description: "Create and change " + category},
		)
	}
	return c
}

// LoadCatalog reads a catalog from a YAML or JSON file and validates it.
func LoadCatalog(path string) (Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Catalog{}, fmt.Errorf("read catalog: %w", err)
	}
	var c Catalog
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Catalog{}, fmt.Errorf("parse catalog %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Catalog{}, fmt.Errorf("catalog %s: %w", path, err)
	}
	return c, nil
}

// Validate reports a catalog that cannot serve requests.
func (c Catalog) Validate() error {
	switch {
	case len(c.APIVersions) == 0:
		return errors.New("apiVersions is empty")
	case !slices.Contains(c.APIVersions, c.LatestAPIVersion):
		return fmt.Errorf("latestApiVersion %d is not one of apiVersions", c.LatestAPIVersion)
	case slices.Max(c.APIVersions) != c.LatestAPIVersion:
		return fmt.Errorf("latestApiVersion %d is not the highest of apiVersions", c.LatestAPIVersion)
	case len(c.Contacts) == 0:
		return errors.New("contacts is empty")
	}
	for _, s := range c.Scopes {
		if !scopePattern.MatchString(s.Name) {
			return fmt.Errorf("scope %q does not match %s", s.Name, scopePattern)
		}
	}
	return nil
}

func (c Catalog) hasScope(name string) bool {
	return slices.ContainsFunc(c.Scopes, func(s backend.Scope) bool { return s.Name == name })
}

func (c Catalog) hasContact(email string) bool {
	return slices.ContainsFunc(c.Contacts, func(u backend.Contact) bool { return u.Email == email })
}
