package controllers

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// answerRecorder keeps the bodies of the answers through it.
type answerRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen [][]byte
}

func (r *answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.seen = append(r.seen, body)
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// The Secret writer creates and updates Secrets with the API server's usual
// answers (the new metadata, AlreadyExists, Conflict), and no answer carries a
// token back.
func TestSecretWriterAnswersCarryNoToken(t *testing.T) {
	ns := newNamespace(t, nil)
	recorder := &answerRecorder{}
	w, err := newSecretWriterFor(controlPlane.Config, testScope, k8s.RESTMapper(), k8s, func(base http.RoundTripper) http.RoundTripper {
		recorder.base = base
		return recorder
	})
	if err != nil {
		t.Fatal(err)
	}
	writer := client.WithFieldOwner(w, FieldManager)
	first, second := []byte("first-token-5f0c7a1e"), []byte("second-token-9b2d4c33")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "written", Namespace: ns, Labels: map[string]string{"a": "b"}},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"authToken": first}}
	if err := writer.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	if secret.UID == "" || secret.ResourceVersion == "" || secret.Labels["a"] != "b" {
		t.Errorf("after the create the Secret's metadata is %+v, want the API server's", secret.ObjectMeta)
	}
	if stored := secretHead(); k8s.Get(t.Context(), client.ObjectKeyFromObject(secret), stored) != nil ||
		stored.ResourceVersion != secret.ResourceVersion || len(stored.ManagedFields) == 0 || stored.ManagedFields[0].Manager != FieldManager {
		t.Errorf("stored %s with managed fields %+v; want %s, written by the operator's field manager", stored.ResourceVersion, stored.ManagedFields, secret.ResourceVersion)
	}
	again := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "written", Namespace: ns}, Data: map[string][]byte{"authToken": first}}
	if err := writer.Create(t.Context(), again); !apierrors.IsAlreadyExists(err) {
		t.Errorf("a second create: %v, want AlreadyExists", err)
	}

	stale := secret.DeepCopy()
	secret.Data = map[string][]byte{"authToken": second}
	if err := writer.Update(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	if secret.ResourceVersion == stale.ResourceVersion {
		t.Error("the update left the resourceVersion as it was")
	}
	stale.Data = map[string][]byte{"authToken": []byte("stale")}
	if err := writer.Update(t.Context(), stale); !apierrors.IsConflict(err) {
		t.Errorf("an update at an old resourceVersion: %v, want Conflict", err)
	}

	stored := &corev1.Secret{}
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(secret), stored); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored.Data["authToken"], second) {
		t.Errorf("the API server holds %q, want the updated token", stored.Data["authToken"])
	}
	recorder.mu.Lock()
	defer recorder.mu.Unlock()
	if len(recorder.seen) < 4 {
		t.Fatalf("%d answers recorded, want the 4 writes'", len(recorder.seen))
	}
	for i, body := range recorder.seen {
		if bytes.Contains(body, first) || bytes.Contains(body, second) {
			t.Errorf("answer %d carries a token back", i)
		}
	}
}
