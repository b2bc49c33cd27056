package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

func TestClientFailureMessage(t *testing.T) {
	_, invalidURL := backend.New(backend.Options{URL: "ftp://tokens.example.com"})
	tests := map[string]struct {
		err        error
		want       string
		wantReason string
	}{
		"the user must fix the credentials Secret": {
			err:        stalled(tokensv1alpha1.ReasonCredentialsInvalid, "credentials Secret %s/%s has no key %q", "ops", "admin", "apiKey"),
			want:       `credentials Secret ops/admin has no key "apiKey"`,
			wantReason: tokensv1alpha1.ReasonCredentialsInvalid,
		},
		"the user must fix the spec": {
			err:        invalidURL,
			want:       `invalid backend configuration: url "ftp://tokens.example.com" must be an absolute http(s) URL`,
			wantReason: tokensv1alpha1.ReasonCredentialsInvalid,
		},
		"reading the credentials failed": {
			err: fmt.Errorf("read credentials Secret ops/admin: %w",
				apierrors.NewServerTimeout(schema.GroupResource{Resource: "secrets"}, "get", 1)),
			want: "The backend client could not be set up: the Kubernetes API answered ServerTimeout",
			// retried, not Stalled: the user has nothing to fix
			wantReason: tokensv1alpha1.ReasonBackendNotReady,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reason, message := clientFailure(tc.err)
			if diff := cmp.Diff([]string{tc.wantReason, tc.want}, []string{reason, message}); diff != "" {
				t.Errorf("clientFailure (-want +got):\n%s", diff)
			}
		})
	}
}

// recordingReader serves Secrets from a map and records every read.
type recordingReader struct {
	client.Reader
	secrets map[types.NamespacedName]*corev1.Secret
	reads   []types.NamespacedName
}

func (r *recordingReader) Get(_ context.Context, key types.NamespacedName, obj client.Object, _ ...client.GetOption) error {
	r.reads = append(r.reads, key)
	s, ok := r.secrets[key]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	s.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

func TestClientOptionsReadOnlyTheOperatorsNamespaceAndTrust(t *testing.T) {
	const own = "apitoken-system"
	adminSecret := func(ns, value string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admin"}, Data: map[string][]byte{"apiKey": []byte(value)}}
	}
	tests := map[string]struct {
		url           string
		secretNS      string
		allowInsecure bool
		value         string
		wantReason    string // empty: the options are built
		wantKey       string
		wantReads     int
	}{
		"the operator's namespace": {url: "https://tokens.example.com", secretNS: own, value: "k3y", wantKey: "k3y", wantReads: 1},
		"another namespace is never read": {url: "https://tokens.example.com", secretNS: "team-a", value: "k3y",
			wantReason: tokensv1alpha1.ReasonCredentialsInvalid},
		"a trailing newline of --from-file is trimmed": {url: "https://tokens.example.com", secretNS: own, value: " k3y\n", wantKey: "k3y", wantReads: 1},
		"a key of whitespace only is no key": {url: "https://tokens.example.com", secretNS: own, value: " \n",
			wantReason: tokensv1alpha1.ReasonCredentialsInvalid, wantReads: 1},
		"plain http to loopback": {url: "http://127.0.0.1:18080", secretNS: own, value: "k3y", wantKey: "k3y", wantReads: 1},
		"plain http to a remote host reads no key": {url: "http://tokens.example.com", secretNS: own, value: "k3y",
			wantReason: tokensv1alpha1.ReasonInsecureURL},
		"plain http to a remote host, allowed": {url: "http://tokens.example.com", secretNS: own, value: "k3y", allowInsecure: true,
			wantKey: "k3y", wantReads: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reader := &recordingReader{secrets: map[types.NamespacedName]*corev1.Secret{
				{Namespace: tc.secretNS, Name: "admin"}: adminSecret(tc.secretNS, tc.value),
			}}
			r := &TokenBackendReconciler{APIReader: reader, CredentialsNamespace: own}
			tb := &tokensv1alpha1.TokenBackend{Spec: tokensv1alpha1.TokenBackendSpec{
				URL: tc.url, AllowInsecureHTTP: tc.allowInsecure,
				CredentialsSecretRef: &tokensv1alpha1.SecretKeyReference{Namespace: tc.secretNS, Name: "admin", Key: "apiKey"},
			}}
			opts, err := r.clientOptions(t.Context(), tb)
			if len(reader.reads) != tc.wantReads {
				t.Errorf("%d Secret reads (%v), want %d", len(reader.reads), reader.reads, tc.wantReads)
			}
			if tc.wantReason != "" {
				got, msg := clientFailure(err)
				if err == nil || got != tc.wantReason {
					t.Fatalf("reason %q (%v), want %q", got, err, tc.wantReason)
				}
				if strings.Contains(msg, "k3y") || strings.HasPrefix(msg, "The backend client could not be set up") {
					t.Errorf("the message should say what to fix, without the key: %q", msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts.AdminKey != tc.wantKey || opts.AllowInsecureHTTP != tc.allowInsecure {
				t.Errorf("admin key %q, allowInsecureHTTP %t; want %q, %t", opts.AdminKey, opts.AllowInsecureHTTP, tc.wantKey, tc.allowInsecure)
			}
		})
	}
}

// TestTokenBackendCredentialsAndTransport runs the rules of clientOptions in
// the running operator: each TokenBackend ends with the expected Ready reason.
func TestTokenBackendCredentialsAndTransport(t *testing.T) {
	ctx := t.Context()
	other := newNamespace(t, nil)
	newline := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "admin-from-file"},
		Data:       map[string][]byte{"apiKey": []byte(testAdminKey + "\n")},
	}
	elsewhere := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "admin"},
		Data:       map[string][]byte{"apiKey": []byte(testAdminKey)},
	}
	for _, s := range []*corev1.Secret{newline, elsewhere} {
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), s) })
	}
	tests := map[string]struct {
		mutate      func(*tokensv1alpha1.TokenBackend)
		wantReady   metav1.ConditionStatus
		wantReason  string
		wantMessage string
	}{
		"a key with a trailing newline works": {
			mutate:    func(tb *tokensv1alpha1.TokenBackend) { tb.Spec.CredentialsSecretRef.Name = newline.Name },
			wantReady: metav1.ConditionTrue, wantReason: tokensv1alpha1.ReasonCatalogFetched,
		},
		"a Secret outside the operator's namespace": {
			mutate: func(tb *tokensv1alpha1.TokenBackend) {
				tb.Spec.CredentialsSecretRef.Namespace, tb.Spec.CredentialsSecretRef.Name = other, elsewhere.Name
			},
			wantReady: metav1.ConditionFalse, wantReason: tokensv1alpha1.ReasonCredentialsInvalid,
			wantMessage: "credentialsSecretRef.namespace must be " + operatorNamespace + ", the operator's namespace: admin key Secrets are read from nowhere else",
		},
		"plain http to a host that is not loopback": {
			mutate:    func(tb *tokensv1alpha1.TokenBackend) { tb.Spec.URL = "http://tokens.example.invalid:8080" },
			wantReady: metav1.ConditionFalse, wantReason: tokensv1alpha1.ReasonInsecureURL,
			wantMessage: "spec.url (or spec.hydra.tokenURL) uses plain http:// to a host that is not loopback (127.0.0.0/8, ::1, localhost): use https://, or set spec.allowInsecureHTTP: true",
		},
	}
	i := 0
	for name, tc := range tests {
		i++
		t.Run(name, func(t *testing.T) {
			tb := newBackend(fmt.Sprintf("transport-%d", i), nil)
			tc.mutate(tb)
			if err := k8s.Create(ctx, tb); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
			var got *metav1.Condition
			framework.Eventually(t, "TokenBackend "+tb.Name+" reports "+tc.wantReason, framework.WaitTimeout, func() error {
				cur := &tokensv1alpha1.TokenBackend{}
				if err := k8s.Get(ctx, client.ObjectKeyFromObject(tb), cur); err != nil {
					return err
				}
				got = meta.FindStatusCondition(cur.Status.Conditions, tokensv1alpha1.ConditionReady)
				if got == nil || got.Status != tc.wantReady || got.Reason != tc.wantReason {
					return fmt.Errorf("Ready %+v", got)
				}
				return nil
			})
			if tc.wantMessage != "" && got.Message != tc.wantMessage {
				t.Errorf("message %q, want %q", got.Message, tc.wantMessage)
			}
		})
	}
}
