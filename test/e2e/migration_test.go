package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestMigratingAHandMadeToken is "Migrating tokens you already have" as the README
// tells it: a token made through the API (as the web UI would), imported with the
// kubectl plugin, applied with kubectl, and nothing changes for its consumer;
// then a reset through the plugin with --wait, and a pause that lets the
// namespace be deleted without a hang.
func TestMigratingAHandMadeToken(t *testing.T) {
	e := sharedCluster(t)
	plugin := buildPlugin(t)
	// A TokenBackend of the test's own: it allows adoption, which the shared
	// cluster's default backend does not.
	e.ownBackend("migration")
	e.kubectl("patch", "tokenbackend", "migration", "--type=merge", "-p", `{"spec":{"policy":{"adoptionNamespaces":{"matchLabels":{"migration":"true"}}}}}`)
	e.kubectl("create", "namespace", "legacy")
	e.kubectl("label", "namespace", "legacy", "migration=true")

	tok, creds, err := e.admin().Create(e.ctx, "made-in-the-web-ui", backend.CreateRequest{
		Name: "partner-sync", Description: "made by hand", PrimaryContact: "ops@example.com",
		Scopes: []string{"reports:read"}, State: backend.StateEnabled,
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(e.ctx, plugin, append([]string{"--kubeconfig", e.c.AdminKubeconfig, "-n", "legacy"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl-apitoken %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	manifest := run("import", "--backend", "migration", tok.SID)
	if _, err := e.c.KubectlWithInput(e.ctx, manifest, "apply", "-n", "legacy", "-f", "-"); err != nil {
		t.Fatalf("apply the imported manifest: %v\n%s", err, manifest)
	}
	name := strings.TrimPrefix(strings.TrimSpace(e.kubectl("-n", "legacy", "get", "apitokens", "-o", "name")), "apitoken.tokens.apitoken.dev/")
	e.waitFor("legacy", "condition=Ready", "apitoken/"+name)
	secret := e.secretCredentials("legacy", name)
	if secret.AccountSID != tok.SID || secret.AuthToken.Reveal() != creds.AuthToken.Reveal() {
		t.Errorf("the Secret holds %s and another auth token than the hand-made one (%s)", secret.AccountSID, tok.SID)
	}
	if c, err := e.admin().Credentials(e.ctx, tok.SID); err != nil || c.Generation != 1 {
		t.Errorf("generation %d (%v), want 1: adopting changed the credentials", c.Generation, err)
	}
	if got := e.verify(creds, "reports:read"); got != 200 {
		t.Errorf("the consumer of the hand-made credentials got %d", got)
	}
	if after, _, _ := e.admin().Get(e.ctx, tok.SID, ""); after.ETag == tok.ETag && after.ExternalID == "" {
		t.Error("the token was not claimed")
	}

	if out := run("reset", name, "--wait", framework.KubectlTimeout(framework.LongWait)); !strings.Contains(out, "2") {
		t.Errorf("reset --wait printed %q, want the new generation 2", out)
	}
	if got := e.verify(creds, "reports:read"); got != 401 {
		t.Errorf("the old credentials after the reset: %d, want 401", got)
	}

	run("pause", name)
	e.waitFor("legacy", "condition=Paused", "apitoken/"+name)
	if out, err := e.c.Kubectl(e.ctx, "delete", "namespace", "legacy", framework.KubectlTimeout(3*framework.LongWait/2)); err != nil {
		t.Fatalf("deleting the namespace of a paused ApiToken hung: %v\n%s", err, out)
	}
	if _, _, err := e.admin().Get(e.ctx, tok.SID, ""); err != nil {
		t.Errorf("the paused token's backend token after the namespace deletion: %v, want left as it is", err)
	}
}

// buildPlugin builds kubectl-apitoken as make plugin does.
func buildPlugin(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kubectl-apitoken")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/kubectl-apitoken")
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatal(fmt.Errorf("build kubectl-apitoken: %w\n%s", err, b))
	}
	return out
}
