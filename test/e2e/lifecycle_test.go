package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestCredentialLifecycle drives the credential lifecycle the way users do, with
// kubectl and the samples: a GitOps restore of an older reset value (A → B → A),
// then a rotation with overlap while a consumer keeps calling /v1/verify with
// whatever its Secret holds, and a real Deployment as the restart target.
func TestCredentialLifecycle(t *testing.T) {
	e := sharedCluster(t)
	e.defaultBackend()
	e.kubectl("create", "namespace", "billing")
	e.applySample("billing", "consumer_deployment.yaml")
	e.applyManifest("billing", strings.Replace(e.sample("tokens_v1alpha1_apitoken_rotating.yaml"), "overlap: 10m", "overlap: 6s", 1))
	e.waitFor("billing", "condition=Ready", "apitoken/billing-sync")
	sid := e.jsonpath("apitoken", "billing-sync", "{.status.accountSid}")
	if got := e.jsonpath("deployment", "billing-sync", "{.spec.template.metadata.annotations}"); got != "" {
		t.Errorf("a new token rolled the Deployment: %s", got)
	}

	t.Run("A → B → A resets twice and never again", func(t *testing.T) {
		for _, nonce := range []string{"A", "B"} {
			e.kubectl("-n", "billing", "annotate", "apitoken", "billing-sync", "tokens.apitoken.dev/reset="+nonce, "--overwrite")
			e.waitFor("billing", "jsonpath={.status.lastHandledReset}="+nonce, "apitoken/billing-sync")
		}
		e.kubectl("-n", "billing", "annotate", "apitoken", "billing-sync", "tokens.apitoken.dev/reset=A", "--overwrite")
		framework.Consistently(t, "the Secret's credentials after the restore of A", 2*framework.QuietPeriod, func() error {
			if got := e.verify(e.secretCredentials("billing", "billing-sync"), "invoices:read"); got != 200 {
				return fmt.Errorf("refused (%d)", got)
			}
			return nil
		})
		if c, err := e.admin().Credentials(e.ctx, sid); err != nil || c.Generation != 3 {
			t.Errorf("backend generation %d (%v), want 3: one reset each for A and B", c.Generation, err)
		}
		if got := e.jsonpath("deployment", "billing-sync", "{.metadata.generation}"); got != "3" {
			t.Errorf("Deployment generation %s, want 3: rolled once per reset", got)
		}
		want := sid + "/3"
		if got := e.jsonpath("deployment", "billing-sync", `{.spec.template.metadata.annotations.tokens\.apitoken\.dev/credentials}`); got != want {
			t.Errorf("pod template annotated %q, want %q", got, want)
		}
	})

	t.Run("overlap rotation refuses no consumer request", func(t *testing.T) {
		k8s, err := client.New(e.c.AdminConfig, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		consumer := startConsumer(e.ctx, k8s, client.ObjectKey{Namespace: "billing", Name: "billing-sync"}, verifies(e.c.TokenServiceURL, "invoices:read", framework.CredentialsOf))
		e.kubectl("-n", "billing", "annotate", "apitoken", "billing-sync", "tokens.apitoken.dev/rotate=e2e-q1", "--overwrite")
		e.waitFor("billing", "jsonpath={.status.lastHandledRotate}=e2e-q1", "apitoken/billing-sync")
		newSID := e.jsonpath("apitoken", "billing-sync", "{.status.accountSid}")
		if newSID == sid {
			t.Fatalf("a rotation with overlap kept the SID %s", sid)
		}
		e.eventually("old token retired", framework.WaitTimeout, func() error {
			if got := e.jsonpath("apitoken", "billing-sync", "{.status.retiringTokens}"); got != "" {
				return fmt.Errorf("still retiring: %s", got)
			}
			return nil
		})
		time.Sleep(time.Second)
		requests, refused := consumer.stop()
		t.Logf("consumer: %d verify calls through the rotation, %d refused", requests, refused)
		if refused != 0 || requests < 50 {
			t.Errorf("consumer: %d of %d requests refused, want 0 of at least 50", refused, requests)
		}
		if _, _, err := e.admin().Get(e.ctx, sid, ""); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("old token after the overlap: %v, want deleted", err)
		}
		want := newSID + "/1"
		if got := e.jsonpath("deployment", "billing-sync", `{.spec.template.metadata.annotations.tokens\.apitoken\.dev/credentials}`); got != want {
			t.Errorf("pod template annotated %q, want %q", got, want)
		}
		if got := e.jsonpath("deployment", "billing-sync", "{.metadata.generation}"); got != "4" {
			t.Errorf("Deployment generation %s, want 4: rolled once for the rotation", got)
		}
		if got := e.jsonpath("deployment", "billing-sync", `{.metadata.managedFields[?(@.manager=="apitoken-operator")].manager}`); got != "apitoken-operator" {
			t.Errorf("no managed fields of apitoken-operator on the Deployment: %q", got)
		}
	})
}

// consumer calls its backend every 100 ms with whatever the Secret holds, as a
// workload that reads its Secret on each request would, and counts refusals.
type consumer struct {
	requests, refused atomic.Int64
	cancel            context.CancelFunc
	done              chan struct{}
}

// startConsumer starts a consumer of the Secret; accepted makes one call with
// what the Secret holds and reports whether the backend took it.
func startConsumer(ctx context.Context, k8s client.Client, secret client.ObjectKey, accepted func(context.Context, *corev1.Secret) bool) *consumer {
	ctx, cancel := context.WithCancel(ctx)
	c := &consumer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			s := &corev1.Secret{}
			if err := k8s.Get(ctx, secret, s); err == nil {
				ok := accepted(ctx, s)
				if ctx.Err() == nil {
					c.requests.Add(1)
					if !ok {
						c.refused.Add(1)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return c
}

// verifies is a consumer's call to tokenservice's /v1/verify with the
// credentials read by read.
func verifies(tokenServiceURL, scope string, read func(*corev1.Secret) backend.Credentials) func(context.Context, *corev1.Secret) bool {
	return func(ctx context.Context, s *corev1.Secret) bool {
		return framework.VerifyStatus(ctx, tokenServiceURL, read(s), scope) == 200
	}
}

func (c *consumer) stop() (requests, refused int64) {
	c.cancel()
	<-c.done
	return c.requests.Load(), c.refused.Load()
}

func (e *env) jsonpath(kind, name, path string) string {
	e.t.Helper()
	return e.kubectl("-n", "billing", "get", kind, name, "-o", "jsonpath="+path)
}
