package plugin

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend/hydra"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestImportFromHydra imports OAuth2 clients made by hand in a real Hydra:
// kubectl apitoken import --backend <a Hydra TokenBackend>.
func TestImportFromHydra(t *testing.T) {
	ctx := context.Background()
	h := framework.NewHydra(t, "../..")
	tb := &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: "imp-hydra"},
		Spec: tokensv1alpha1.TokenBackendSpec{
			Type: tokensv1alpha1.BackendHydra, URL: h.AdminURL,
			Hydra: &tokensv1alpha1.HydraSettings{TokenURL: h.TokenURL},
		},
	}
	if err := k8s.Create(ctx, tb); err != nil {
		t.Fatal(err)
	}
	createNamespace(t, "import-hydra")
	secret, err := hydra.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// A client made by hand: no owner, its contacts without the operator's
	// metadata, no API version.
	handMade := backend.CreateRequest{Name: "Partner portal", DeveloperEmails: []string{"ops@example.com", "dev@example.com"},
		Scopes: []string{"reports:read"}, State: backend.StateEnabled}
	if _, _, err := h.Admin.CreateClient(ctx, "partner-portal", handMade, secret); err != nil {
		t.Fatal(err)
	}
	claimed := handMade
	claimed.ExternalID = "some-uid"
	if _, _, err := h.Admin.CreateClient(ctx, "claimed-client", claimed, secret); err != nil {
		t.Fatal(err)
	}

	r := run(t, "import", "--backend", "imp-hydra", "-n", "import-hydra", "partner-portal")
	if r.err != nil {
		t.Fatalf("import: %v (stderr %s)", r.err, r.errOut)
	}
	at := &tokensv1alpha1.ApiToken{}
	if err := yaml.UnmarshalStrict([]byte(strings.TrimPrefix(r.out, "---\n")), at); err != nil {
		t.Fatalf("%v:\n%s", err, r.out)
	}
	s := at.Spec
	if s.Adopt == nil || s.Adopt.AccountSID != "partner-portal" || s.BackendRef.Name != "imp-hydra" || s.APIVersion != nil ||
		s.PrimaryContact != "dev@example.com" || len(s.DeveloperEmails) != 1 || s.DeveloperEmails[0] != "ops@example.com" ||
		len(s.Scopes) != 1 || s.Scopes[0] != "reports:read" {
		t.Errorf("manifest does not match the client:\n%s", r.out)
	}
	at.ObjectMeta = metav1.ObjectMeta{Namespace: at.Namespace, GenerateName: at.Name + "-"}
	if err := k8s.Create(ctx, at); err != nil {
		t.Errorf("API server refuses the manifest: %v\n%s", err, r.out)
	}
	if r := run(t, "import", "--backend", "imp-hydra", "-n", "import-hydra", "claimed-client"); r.err == nil || !strings.Contains(r.errOut, "already claimed") {
		t.Errorf("a claimed client: %v, %s; want it skipped", r.err, r.errOut)
	}
	if r := run(t, "import", "--backend", "imp-hydra", "-n", "import-hydra", "--unmanaged"); r.err != nil || strings.Count(r.out, "kind: ApiToken") != 1 {
		t.Errorf("--unmanaged: %v, want exactly the unclaimed client:\n%s", r.err, r.out)
	}
}
