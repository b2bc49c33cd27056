package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// templatedToken asks for a .env file and the key names of an existing chart,
// and keeps none of the default keys.
const templatedToken = `apiVersion: tokens.apitoken.dev/v1alpha1
kind: ApiToken
metadata:
  name: reports-env
spec:
  displayName: reports-env
  primaryContact: ops@example.com
  scopes: ["reports:read"]
  rotation:
    overlap: 6s
  secret:
    formats: [Env]
    template:
      data:
        api-user: '{{ .AccountSID }}'
        api-password: '{{ .AuthToken }}'
`

// envCredentials reads the SID and auth token out of the Secret's .env key as a
// dotenv consumer does (KEY=value, or KEY='value' when it is not plain).
func envCredentials(s *corev1.Secret) backend.Credentials {
	var creds backend.Credentials
	scanner := bufio.NewScanner(bytes.NewReader(s.Data[".env"]))
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), "=")
		if !ok {
			continue
		}
		if len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'' {
			value = strings.ReplaceAll(value[1:len(value)-1], `'\''`, "'")
		}
		switch key {
		case "ACCOUNT_SID":
			creds.AccountSID = value
		case "AUTH_TOKEN":
			creds.AuthToken = backend.AuthToken(value)
		}
	}
	return creds
}

// TestTemplatedEnvConsumer: a consumer that reads only the templated .env key
// gets working credentials before and after a reset, and is never refused
// through a rotation with overlap.
func TestTemplatedEnvConsumer(t *testing.T) {
	e := sharedCluster(t)
	e.defaultBackend()
	e.kubectl("create", "namespace", "templated")
	e.applyManifest("templated", templatedToken)
	e.waitFor("templated", "condition=Ready", "apitoken/reports-env")
	k8s, err := client.New(e.c.AdminConfig, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	read := func() (*corev1.Secret, backend.Credentials) {
		s := &corev1.Secret{}
		if err := k8s.Get(e.ctx, client.ObjectKey{Namespace: "templated", Name: "reports-env"}, s); err != nil {
			t.Fatal(err)
		}
		return s, envCredentials(s)
	}
	s, creds := read()
	if got := e.verify(creds, "reports:read"); got != 200 {
		t.Fatalf("the .env credentials verify with %d, want 200", got)
	}
	if string(s.Data["api-user"]) != creds.AccountSID || string(s.Data["api-password"]) != creds.AuthToken.Reveal() {
		t.Errorf("the chart's key names do not hold the same credentials as .env")
	}
	if _, kept := s.Data["authToken"]; kept {
		t.Errorf("a default key is kept: %v", slices.Collect(maps.Keys(s.Data)))
	}

	e.kubectl("-n", "templated", "annotate", "apitoken", "reports-env", "tokens.apitoken.dev/reset=leak-1", "--overwrite")
	e.waitFor("templated", "jsonpath={.status.lastHandledReset}=leak-1", "apitoken/reports-env")
	e.waitFor("templated", "condition=Ready", "apitoken/reports-env")
	e.eventually("the .env holds the reset token", framework.WaitTimeout, func() error {
		_, after := read()
		if after.AuthToken == creds.AuthToken {
			return errors.New("still the old token")
		}
		if got := e.verify(after, "reports:read"); got != 200 {
			return fmt.Errorf("refused: %d", got)
		}
		return nil
	})
	if got := e.verify(creds, "reports:read"); got == 200 {
		t.Errorf("the token before the reset still verifies")
	}

	consumer := startConsumer(e.ctx, k8s, client.ObjectKey{Namespace: "templated", Name: "reports-env"}, verifies(e.c.TokenServiceURL, "reports:read", envCredentials))
	e.kubectl("-n", "templated", "annotate", "apitoken", "reports-env", "tokens.apitoken.dev/rotate=q1", "--overwrite")
	e.waitFor("templated", "jsonpath={.status.lastHandledRotate}=q1", "apitoken/reports-env")
	e.eventually("the old token retired", 2*framework.WaitTimeout, func() error {
		if got := e.kubectl("-n", "templated", "get", "apitoken", "reports-env", "-o", "jsonpath={.status.retiringTokens}"); got != "" {
			return fmt.Errorf("still retiring: %s", got)
		}
		return nil
	})
	e.eventually("the consumer made 50 requests", framework.WaitTimeout, func() error {
		if n := consumer.requests.Load(); n < 50 {
			return fmt.Errorf("only %d", n)
		}
		return nil
	})
	requests, refused := consumer.stop()
	t.Logf(".env consumer: %d verify calls through the rotation, %d refused", requests, refused)
	if refused != 0 || requests < 50 {
		t.Errorf(".env consumer: %d of %d requests refused, want 0 of at least 50", refused, requests)
	}
	if _, rotated := read(); rotated.AccountSID == creds.AccountSID {
		t.Errorf("the .env still names %s after a rotation with overlap", creds.AccountSID)
	}
}
