package tokenservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemoCatalog(t *testing.T) {
	c := DemoCatalog()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Scopes) != 32 || c.LatestAPIVersion != 16 || len(c.APIVersions) != 5 {
		t.Errorf("demo catalog: %d scopes, latest %d, %d versions", len(c.Scopes), c.LatestAPIVersion, len(c.APIVersions))
	}
	for _, s := range []string{"promo-codes:write", "tracking-links:read", "reports:read"} {
		if !c.hasScope(s) {
			t.Errorf("demo catalog lacks %s", s)
		}
	}
	if !c.hasContact("ops@example.com") || !c.hasContact("admin@example.com") {
		t.Error("demo catalog lacks a contact")
	}
}

func TestLoadCatalog(t *testing.T) {
	tests := map[string]struct {
		yaml    string
		wantErr string
	}{
		"valid": {yaml: `
apiVersions: [1, 2]
latestApiVersion: 2
scopes: [{name: "a:read", category: a, description: read a}]
contacts: [{email: x@example.com, name: X}]`},
		"latest missing":  {yaml: "apiVersions: [1]\nlatestApiVersion: 2\ncontacts: [{email: x@example.com}]", wantErr: "not one of"},
		"latest not max":  {yaml: "apiVersions: [1, 3]\nlatestApiVersion: 1\ncontacts: [{email: x@example.com}]", wantErr: "not the highest"},
		"no versions":     {yaml: "latestApiVersion: 1", wantErr: "apiVersions is empty"},
		"no contacts":     {yaml: "apiVersions: [1]\nlatestApiVersion: 1", wantErr: "contacts is empty"},
		"bad scope":       {yaml: "apiVersions: [1]\nlatestApiVersion: 1\ncontacts: [{email: x@example.com}]\nscopes: [{name: Bad}]", wantErr: "does not match"},
		"unknown field":   {yaml: "apiVersion: [1]", wantErr: "unknown field"},
		"not yaml at all": {yaml: "{", wantErr: "parse catalog"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "catalog.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadCatalog(path)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
