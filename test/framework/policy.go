package framework

// This file: the admission policy of config/admission for suites that run
// envtest without kubectl, and a backend whose catalog has gone stale.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// AdmissionPolicyObjects reads the objects that config/admission installs: the
// files its kustomization lists, as they are (the Cluster applies them with
// config/default instead).
func AdmissionPolicyObjects(repoRoot string) ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(repoRoot, "config", "admission")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var kustomization struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &kustomization); err != nil {
		return nil, fmt.Errorf("config/admission/kustomization.yaml: %w", err)
	}
	var objs []*unstructured.Unstructured
	for _, file := range kustomization.Resources {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
				return nil, fmt.Errorf("config/admission/%s: %w", file, err)
			}
			if len(obj.Object) > 0 {
				objs = append(objs, obj)
			}
		}
	}
	return objs, nil
}

// InstallAdmissionPolicy creates the ValidatingAdmissionPolicy apitoken-policy
// and its binding from config/admission, waits until the API server enforces
// them, and returns a function that removes them and waits until it no longer
// does. Both waits use a probe: a TokenBackend whose policy allows one scope,
// and an ApiToken (a server-side dry run) asking for another.
func InstallAdmissionPolicy(ctx context.Context, c client.Client, repoRoot string) (uninstall func() error, err error) {
	objs, err := AdmissionPolicyObjects(repoRoot)
	if err != nil {
		return nil, err
	}
	probeBackend := TokenBackendFor("admission-policy-probe", "http://127.0.0.1:1", time.Minute)
	probeBackend.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: []string{"probe:read"}}
	probe := &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "admission-policy-probe"},
		Spec: tokensv1alpha1.ApiTokenSpec{BackendRef: tokensv1alpha1.BackendReference{Name: probeBackend.Name},
			PrimaryContact: "probe@example.com", Scopes: []string{"probe:write"}},
	}
	uninstall = func() error {
		defer func() { _ = c.Delete(context.Background(), probeBackend) }()
		for _, obj := range slices.Backward(objs) {
			if err := c.Delete(context.Background(), obj); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
		return Poll(WaitTimeout, func() error {
			return c.Create(context.Background(), probe.DeepCopy(), client.DryRunAll)
		})
	}
	for _, obj := range append([]client.Object{probeBackend}, unstructuredObjects(objs)...) {
		if err := c.Create(ctx, obj); err != nil {
			_ = uninstall()
			return nil, fmt.Errorf("create %s: %w", obj.GetName(), err)
		}
	}
	if _, err := WaitUntilRefused(ctx, c, probe); err != nil {
		_ = uninstall()
		return nil, fmt.Errorf("the admission policy is not enforced: %w", err)
	}
	return uninstall, nil
}

func unstructuredObjects(objs []*unstructured.Unstructured) []client.Object {
	out := make([]client.Object, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out
}

// WaitUntilRefused creates obj with a server-side dry run until admission
// refuses it as invalid, and returns that refusal: a policy, its binding and the
// params it reads take effect a moment after they are written.
func WaitUntilRefused(ctx context.Context, c client.Client, obj client.Object) (refusal error, err error) {
	err = Poll(WaitTimeout, func() error {
		attempt := obj.DeepCopyObject().(client.Object)
		createErr := c.Create(ctx, attempt, client.DryRunAll)
		switch {
		case createErr == nil:
			return fmt.Errorf("%s was admitted", obj.GetName())
		case !apierrors.IsInvalid(createErr):
			return fmt.Errorf("%s: %w", obj.GetName(), createErr)
		}
		refusal = createErr
		return nil
	})
	return refusal, err
}

// StaleCatalog wraps a tokenservice (StartTokenService's wrap) so that its
// GET /v1/catalog also offers these scopes, contacts and API versions, which
// the backend itself does not know and rejects: a catalog gone stale. The
// operator checks ApiTokens against the published catalog before any backend
// call; this keeps the backend's own refusal (BackendRejected) reachable.
func StaleCatalog(scopes, contacts []string, apiVersions []int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/v1/catalog") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			var catalog backend.Catalog
			if rec.Code == http.StatusOK && json.Unmarshal(body, &catalog) == nil {
				for _, s := range scopes {
					catalog.Scopes = append(catalog.Scopes, backend.Scope{Name: s, Category: strings.Split(s, ":")[0]})
				}
				for _, c := range contacts {
					catalog.Contacts = append(catalog.Contacts, backend.Contact{Email: c})
				}
				catalog.APIVersions = append(catalog.APIVersions, apiVersions...)
				if b, err := json.Marshal(catalog); err == nil {
					body = b
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = bytes.NewReader(body).WriteTo(w)
		})
	}
}
