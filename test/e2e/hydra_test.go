package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/hydraserver"
)

// TestHydraClientCredentialsConsumer drives a Hydra backend as a user would:
// a TokenBackend of type Hydra and an ApiToken applied with kubectl, and a
// consumer that reads the Secret (clientId, clientSecret, tokenUrl) and asks
// Hydra's token endpoint for an access token with the client-credentials grant,
// before and after a reset, through a rotation with overlap (never refused),
// across disable and enable, and after deletion.
func TestHydraClientCredentialsConsumer(t *testing.T) {
	e := sharedCluster(t)
	h, err := framework.StartHydra(repoRoot, "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	e.applyManifest("", fmt.Sprintf(`apiVersion: tokens.apitoken.dev/v1alpha1
kind: TokenBackend
metadata:
  name: hydra-e2e
spec:
  type: Hydra
  url: %s
  hydra:
    tokenURL: %s
  resyncInterval: 10s
`, h.AdminURL, h.TokenURL))
	e.waitFor("", "condition=Ready", "tokenbackend/hydra-e2e")
	t.Cleanup(func() {
		_, _ = e.c.Kubectl(context.Background(), "delete", "tokenbackend", "hydra-e2e", "--wait=false")
	})
	e.kubectl("create", "namespace", "oauth")
	e.applyManifest("oauth", `apiVersion: tokens.apitoken.dev/v1alpha1
kind: ApiToken
metadata:
  name: partner-sync
spec:
  backendRef: {name: hydra-e2e}
  description: Partner sync over OAuth2
  primaryContact: ops@example.com
  scopes: [reports:read]
  rotation:
    overlap: 6s
`)
	e.waitFor("oauth", "condition=Ready", "apitoken/partner-sync")
	uid := e.kubectl("-n", "oauth", "get", "apitoken", "partner-sync", "-o", "jsonpath={.metadata.uid}")
	if sid := e.kubectl("-n", "oauth", "get", "apitoken", "partner-sync", "-o", "jsonpath={.status.accountSid}"); sid != uid {
		t.Errorf("client id %q, want the ApiToken's UID %q", sid, uid)
	}
	k8s, err := client.New(e.c.AdminConfig, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: "oauth", Name: "partner-sync"}
	var secrets sync.Map // every client secret the test saw, for the leak search
	grant := func() hydraserver.Grant {
		t.Helper()
		g, err := oauthGrant(e.ctx, k8s, key, "reports:read", &secrets)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := grant(); g.Status != http.StatusOK {
		t.Fatalf("the consumer got no access token: %d %s", g.Status, g.Error)
	}
	if g, _ := oauthGrant(e.ctx, k8s, key, "reports:write", &secrets); g.Error != "invalid_scope" {
		t.Errorf("a scope the ApiToken does not hold: %d %q, want invalid_scope", g.Status, g.Error)
	}

	t.Run("reset: the old secret is refused, the new one works", func(t *testing.T) {
		old := e.hydraCredentials(key, &secrets)
		e.kubectl("-n", "oauth", "annotate", "apitoken", "partner-sync", "tokens.apitoken.dev/reset=leak-1", "--overwrite")
		e.waitFor("oauth", "jsonpath={.status.lastHandledReset}=leak-1", "apitoken/partner-sync")
		e.eventually("the Secret holds the new secret", framework.WaitTimeout, func() error {
			if e.hydraCredentials(key, &secrets).AuthToken.Reveal() == old.AuthToken.Reveal() {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if g := grant(); g.Status != http.StatusOK {
			t.Errorf("after the reset: %d %s", g.Status, g.Error)
		}
		if ok, _ := h.Accepts(e.ctx, old.AccountSID, old.AuthToken, ""); ok {
			t.Error("the secret from before the reset still gets access tokens")
		}
	})

	t.Run("rotation with overlap refuses no consumer request", func(t *testing.T) {
		before := e.hydraCredentials(key, &secrets)
		consumer := startConsumer(e.ctx, k8s, key, func(ctx context.Context, s *corev1.Secret) bool {
			g, err := grantFor(ctx, s, "reports:read", &secrets)
			return err == nil && g.Status == http.StatusOK
		})
		e.kubectl("-n", "oauth", "annotate", "apitoken", "partner-sync", "tokens.apitoken.dev/rotate=q1", "--overwrite")
		e.waitFor("oauth", "jsonpath={.status.lastHandledRotate}=q1", "apitoken/partner-sync")
		if sid := e.kubectl("-n", "oauth", "get", "apitoken", "partner-sync", "-o", "jsonpath={.status.accountSid}"); sid != uid+"-1" {
			t.Errorf("the successor client is %q, want %q", sid, uid+"-1")
		}
		e.eventually("the first client retired", framework.WaitTimeout, func() error {
			if got := e.kubectl("-n", "oauth", "get", "apitoken", "partner-sync", "-o", "jsonpath={.status.retiringTokens}"); got != "" {
				return fmt.Errorf("still retiring: %s", got)
			}
			return nil
		})
		time.Sleep(time.Second)
		requests, refused := consumer.stop()
		t.Logf("consumer: %d client-credentials grants through the rotation, %d refused", requests, refused)
		if refused != 0 || requests < 30 {
			t.Errorf("consumer: %d of %d grants refused, want 0 of at least 30", refused, requests)
		}
		if ok, _ := h.Accepts(e.ctx, before.AccountSID, before.AuthToken, ""); ok {
			t.Error("the first client still works after its overlap")
		}
	})

	t.Run("disable refuses, enable restores", func(t *testing.T) {
		e.kubectl("-n", "oauth", "patch", "apitoken", "partner-sync", "--type=merge", "-p", `{"spec":{"disabled":true}}`)
		e.eventually("refused while disabled", framework.WaitTimeout, func() error {
			if g := grant(); g.Status == http.StatusOK {
				return fmt.Errorf("still granted")
			}
			return nil
		})
		e.kubectl("-n", "oauth", "patch", "apitoken", "partner-sync", "--type=merge", "-p", `{"spec":{"disabled":false}}`)
		e.eventually("granted once enabled", framework.WaitTimeout, func() error {
			if g := grant(); g.Status != http.StatusOK {
				return fmt.Errorf("refused: %d %s", g.Status, g.Error)
			}
			return nil
		})
	})

	t.Run("deletion deletes the client and the operator's Secrets", func(t *testing.T) {
		last := e.hydraCredentials(key, &secrets)
		e.kubectl("-n", "oauth", "delete", "apitoken", "partner-sync", "--timeout=60s")
		if ok, _ := h.Accepts(e.ctx, last.AccountSID, last.AuthToken, ""); ok {
			t.Error("the client still gets access tokens after deletion")
		}
		found, err := h.Admin.FindByExternalID(e.ctx, uid)
		if err != nil || len(found) != 0 {
			t.Errorf("clients owned by the deleted ApiToken: %v (%v)", found, err)
		}
		e.eventually("no Secret of the operator left", framework.WaitTimeout, func() error {
			out := e.kubectl("-n", "oauth", "get", "secrets", "-o", "name")
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("left: %s", out)
			}
			return nil
		})
	})

	t.Run("client secrets never leak", func(t *testing.T) {
		var all []string
		secrets.Range(func(s, _ any) bool { all = append(all, s.(string)); return true })
		if len(all) < 3 {
			t.Fatalf("the test saw %d client secrets; the leak check needs them", len(all))
		}
		places := map[string]string{
			"operator log": e.c.OperatorLog(),
			"events":       e.kubectl("get", "events", "-A", "-o", "yaml"),
			"ApiTokens":    e.kubectl("get", "apitokens", "-A", "-o", "yaml"),
			"TokenBackend": e.kubectl("get", "tokenbackend", "hydra-e2e", "-o", "yaml"),
		}
		leaks, err := framework.FindLeaks(all, places)
		if err != nil {
			t.Fatal(err)
		}
		for _, leak := range leaks {
			t.Errorf("a client secret leaked: %s", leak)
		}
	})
}

// hydraCredentials reads the client ID and secret from the Secret with kubectl,
// as a user would, and remembers the secret for the leak search.
func (e *env) hydraCredentials(key client.ObjectKey, seen *sync.Map) backend.Credentials {
	e.t.Helper()
	id := decodeBase64(e.t, e.kubectl("-n", key.Namespace, "get", "secret", key.Name, "-o", "jsonpath={.data.clientId}"))
	secret := decodeBase64(e.t, e.kubectl("-n", key.Namespace, "get", "secret", key.Name, "-o", "jsonpath={.data.clientSecret}"))
	seen.Store(secret, true)
	return backend.Credentials{AccountSID: id, AuthToken: backend.AuthToken(secret)}
}

// oauthGrant is what a consumer does: read the Secret, then ask its tokenUrl
// for an access token with its clientId and clientSecret.
func oauthGrant(ctx context.Context, k8s client.Client, key client.ObjectKey, scope string, seen *sync.Map) (hydraserver.Grant, error) {
	s := &corev1.Secret{}
	if err := k8s.Get(ctx, key, s); err != nil {
		return hydraserver.Grant{}, err
	}
	return grantFor(ctx, s, scope, seen)
}

// grantFor asks the Secret's tokenUrl for an access token with its clientId
// and clientSecret, and remembers the secret for the leak search.
func grantFor(ctx context.Context, s *corev1.Secret, scope string, seen *sync.Map) (hydraserver.Grant, error) {
	secret := string(s.Data[tokensv1alpha1.DefaultClientSecretKey])
	seen.Store(secret, true)
	return hydraserver.ClientCredentials(ctx, string(s.Data[tokensv1alpha1.DefaultTokenURLKey]),
		string(s.Data[tokensv1alpha1.DefaultClientIDKey]), secret, scope)
}

func decodeBase64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return string(b)
}
