package gitops

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/controllers"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

const (
	adminKey  = "gitops-admin-key"
	namespace = "gitops"
	okBackend = "gitops-ok"
)

var (
	controlPlane *framework.ControlPlane
	k8s          client.Client
	scheme       = controllers.NewScheme()
	service      *framework.TokenService
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain starts envtest, tokenservice and the operator in-process, with one
// Ready TokenBackend and the namespace of the ApiTokens.
func runMain(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(&framework.SyncBuffer{})))
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var err error
	if controlPlane, err = framework.StartControlPlane(repoRoot, scheme); err != nil {
		return fail(err)
	}
	defer controlPlane.Stop()
	k8s = controlPlane.Client
	ctx := context.Background()
	if err := controlPlane.CreateAdminKey(ctx, adminKey); err != nil {
		return fail(err)
	}
	if service, err = framework.StartTokenService(adminKey, nil); err != nil {
		return fail(err)
	}
	defer service.Close()
	base := framework.ManagerOptions()
	base.Scheme = scheme
	mgr, err := controllers.NewManager(controlPlane.Config, base, controllers.Options{CredentialsNamespace: framework.OperatorNamespace})
	if err != nil {
		return fail(err)
	}
	defer framework.RunManager(mgr)()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return fail(err)
	}
	if err := controlPlane.CreateTokenBackend(ctx, framework.TokenBackendFor(okBackend, service.URL, time.Minute)); err != nil {
		return fail(err)
	}
	return m.Run()
}

// healthCase is one object and what Argo CD (the Lua) and Flux (kstatus) make of it.
type healthCase struct {
	name    string
	obj     client.Object
	script  string // argocd-cm key
	status  string
	message string // substring of the Argo CD message
	kstatus status.Status
	flux    status.Status // with the doc's healthCheckExprs
}

const (
	apiTokenKey     = "resource.customizations.health.tokens.apitoken.dev_ApiToken"
	tokenBackendKey = "resource.customizations.health.tokens.apitoken.dev_TokenBackend"
)

func TestHealth(t *testing.T) {
	ctx := t.Context()
	var cases []healthCase

	// ApiTokens.
	// Created as unstructured, so that fresh is the object exactly as the API
	// server answered the create: no status yet.
	fresh := asUnstructured(t, newApiToken("ready", okBackend))
	if err := k8s.Create(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	ready := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Name: fresh.GetName()}}
	ready = waitApiToken(t, ready.Name, func(at *tokensv1alpha1.ApiToken) bool {
		return framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionReady) && at.Status.ObservedGeneration == at.Generation
	})
	stale := ready.DeepCopy()
	stale.Spec.Description = "changed in Git"
	if err := k8s.Update(ctx, stale); err != nil { // the answer: generation 2, status of generation 1
		t.Fatal(err)
	}
	if stale.Generation <= stale.Status.ObservedGeneration {
		t.Fatalf("update did not make the status stale: generation %d, observed %d", stale.Generation, stale.Status.ObservedGeneration)
	}

	noBackend := newApiToken("no-backend", "gitops-missing")
	if err := k8s.Create(ctx, noBackend); err != nil {
		t.Fatal(err)
	}
	noBackend = waitApiToken(t, noBackend.Name, func(at *tokensv1alpha1.ApiToken) bool {
		return framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionStalled)
	})

	// A TokenBackend whose admin key Secret is missing is not Ready, and its
	// ApiTokens wait for it (Reconciling=True, BackendNotReady).
	badCreds := framework.TokenBackendFor("gitops-bad-credentials", service.URL, time.Minute)
	badCreds.Spec.CredentialsSecretRef.Name = "no-such-secret"
	freshBackend := asUnstructured(t, badCreds)
	if err := k8s.Create(ctx, freshBackend); err != nil {
		t.Fatal(err)
	}
	waiting := newApiToken("waiting", badCreds.Name)
	if err := k8s.Create(ctx, waiting); err != nil {
		t.Fatal(err)
	}
	waiting = waitApiToken(t, waiting.Name, func(at *tokensv1alpha1.ApiToken) bool {
		return framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionReconciling)
	})

	cases = append(cases,
		healthCase{"ApiToken/fresh", fresh, apiTokenKey, "Progressing", "Waiting for the operator to report a status", status.CurrentStatus, status.UnknownStatus},
		healthCase{"ApiToken/ready", ready, apiTokenKey, "Healthy", "credentials are in Secret ready", status.CurrentStatus, status.CurrentStatus},
		healthCase{"ApiToken/stale", stale, apiTokenKey, "Progressing", fmt.Sprintf("observe generation %d", stale.Generation), status.InProgressStatus, status.InProgressStatus},
		healthCase{"ApiToken/unknown-backend", noBackend, apiTokenKey, "Degraded", `TokenBackend "gitops-missing" does not exist`, status.FailedStatus, status.FailedStatus},
		healthCase{"ApiToken/backend-not-ready", waiting, apiTokenKey, "Progressing", `TokenBackend "gitops-bad-credentials" is not ready`, status.InProgressStatus, status.InProgressStatus},
		healthCase{"ApiToken/paused", paused(ready, true), apiTokenKey, "Suspended", "paused", status.CurrentStatus, status.CurrentStatus},
		// Edited in Git while paused: still Suspended for Argo CD; kstatus sees the stale generation.
		healthCase{"ApiToken/paused-stale", paused(stale, true), apiTokenKey, "Suspended", "paused", status.InProgressStatus, status.InProgressStatus},
		// The annotation is gone, the operator has not resumed yet.
		healthCase{"ApiToken/resuming", paused(ready, false), apiTokenKey, "Progressing", "Resuming", status.CurrentStatus, status.CurrentStatus},
	)

	// TokenBackends.
	okTB := &tokensv1alpha1.TokenBackend{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: okBackend}, okTB); err != nil {
		t.Fatal(err)
	}
	staleTB := okTB.DeepCopy()
	staleTB.Spec.ResyncInterval = &metav1.Duration{Duration: 2 * time.Minute}
	if err := k8s.Update(ctx, staleTB); err != nil {
		t.Fatal(err)
	}
	badCredsTB := waitBackendReason(t, badCreds.Name, tokensv1alpha1.ReasonCredentialsInvalid)

	insecureTB := createBackend(t, framework.TokenBackendFor("gitops-insecure", "http://tokens.example.com", time.Minute), tokensv1alpha1.ReasonInsecureURL)

	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "wrong-admin-key", Namespace: framework.OperatorNamespace},
		Data:       map[string][]byte{framework.AdminKeyKey: []byte("not-the-admin-key")},
	}); err != nil {
		t.Fatal(err)
	}
	unauthorized := framework.TokenBackendFor("gitops-unauthorized", service.URL, time.Minute)
	unauthorized.Spec.CredentialsSecretRef.Name = "wrong-admin-key"
	unauthorizedTB := createBackend(t, unauthorized, tokensv1alpha1.ReasonBackendUnauthorized)
	downTB := createBackend(t, framework.TokenBackendFor("gitops-down", "http://127.0.0.1:1", time.Minute), tokensv1alpha1.ReasonBackendUnavailable)

	cases = append(cases,
		healthCase{"TokenBackend/fresh", freshBackend, tokenBackendKey, "Progressing", "Waiting for the operator", status.CurrentStatus, status.UnknownStatus},
		healthCase{"TokenBackend/ready", okTB, tokenBackendKey, "Healthy", "Catalog fetched", status.CurrentStatus, status.CurrentStatus},
		healthCase{"TokenBackend/stale", staleTB, tokenBackendKey, "Progressing", fmt.Sprintf("observe generation %d", staleTB.Generation), status.InProgressStatus, status.InProgressStatus},
		healthCase{"TokenBackend/credentials-invalid", badCredsTB, tokenBackendKey, "Degraded", "no-such-secret", status.FailedStatus, status.FailedStatus},
		healthCase{"TokenBackend/insecure-url", insecureTB, tokenBackendKey, "Degraded", "plain http://", status.FailedStatus, status.FailedStatus},
		healthCase{"TokenBackend/unauthorized", unauthorizedTB, tokenBackendKey, "Degraded", "HTTP 401", status.FailedStatus, status.FailedStatus},
		healthCase{"TokenBackend/unreachable", downTB, tokenBackendKey, "Progressing", "could not be reached", status.InProgressStatus, status.InProgressStatus},
	)

	exprs := fluxExprs(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			script, err := readScript(c.script)
			if err != nil {
				t.Fatal(err)
			}
			setKind(c.obj)
			got, err := runHealth(script, c.obj)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != c.status || !strings.Contains(got.Message, c.message) {
				t.Errorf("Argo CD health = %s %q, want %s with %q\nstatus: %s", got.Status, got.Message, c.status, c.message, statusJSON(c.obj))
			}
			ks, err := kstatusOf(c.obj)
			if err != nil {
				t.Fatal(err)
			}
			if ks.Status != c.kstatus {
				t.Errorf("kstatus = %s (%s), want %s", ks.Status, ks.Message, c.kstatus)
			}
			kind := c.obj.GetObjectKind().GroupVersionKind().Kind
			fs, err := fluxStatus(exprs[kind], objectMap(t, c.obj))
			if err != nil {
				t.Fatal(err)
			}
			if fs != c.flux {
				t.Errorf("Flux healthCheckExprs = %s, want %s", fs, c.flux)
			}
			t.Logf("Argo CD: %s %q; kstatus: %s; healthCheckExprs: %s", got.Status, got.Message, ks.Status, fs)
		})
	}
}

func newApiToken(name, backend string) *tokensv1alpha1.ApiToken {
	return &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: tokensv1alpha1.ApiTokenSpec{
			BackendRef:     tokensv1alpha1.BackendReference{Name: backend},
			PrimaryContact: "ops@example.com",
			Scopes:         []string{"reports:read"},
		},
	}
}

// paused is at as the pause feature leaves it (docs/design.md, "Adoption and pause"): the annotation, the
// condition Paused=True, Reconciling False and Ready as it was. With
// annotated false, the annotation has been removed and the operator has not
// resumed yet.
func paused(at *tokensv1alpha1.ApiToken, annotated bool) *tokensv1alpha1.ApiToken {
	p := at.DeepCopy()
	if annotated {
		metav1.SetMetaDataAnnotation(&p.ObjectMeta, tokensv1alpha1.PausedAnnotation, "true")
	}
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{
		Type: tokensv1alpha1.ConditionPaused, Status: metav1.ConditionTrue, Reason: tokensv1alpha1.ReasonPaused,
		Message: "The operator is paused by the tokens.apitoken.dev/paused annotation", ObservedGeneration: p.Status.ObservedGeneration,
	})
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{
		Type: tokensv1alpha1.ConditionReconciling, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonPaused,
		Message: "Paused", ObservedGeneration: p.Status.ObservedGeneration,
	})
	return p
}

func waitApiToken(t *testing.T, name string, done func(*tokensv1alpha1.ApiToken) bool) *tokensv1alpha1.ApiToken {
	t.Helper()
	at := &tokensv1alpha1.ApiToken{}
	framework.Eventually(t, "ApiToken "+name, framework.WaitTimeout, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: name}, at); err != nil {
			return err
		}
		if !done(at) {
			return fmt.Errorf("not yet: %+v", at.Status.Conditions)
		}
		return nil
	})
	return at
}

func waitBackendReason(t *testing.T, name, reason string) *tokensv1alpha1.TokenBackend {
	t.Helper()
	tb := &tokensv1alpha1.TokenBackend{}
	framework.Eventually(t, "TokenBackend "+name, framework.LongWait, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKey{Name: name}, tb); err != nil {
			return err
		}
		c := meta.FindStatusCondition(tb.Status.Conditions, tokensv1alpha1.ConditionReady)
		if c == nil || c.Reason != reason || tb.Status.ObservedGeneration != tb.Generation {
			return fmt.Errorf("not yet: %+v", tb.Status.Conditions)
		}
		return nil
	})
	return tb
}

// createBackend creates the TokenBackend and waits until its Ready condition
// has the reason.
func createBackend(t *testing.T, tb *tokensv1alpha1.TokenBackend, reason string) *tokensv1alpha1.TokenBackend {
	t.Helper()
	if err := k8s.Create(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	return waitBackendReason(t, tb.Name, reason)
}

// setKind fills in apiVersion and kind, which typed objects read by the client lack.
func setKind(obj client.Object) {
	gvks, _, err := scheme.ObjectKinds(obj)
	if err == nil && len(gvks) > 0 {
		obj.GetObjectKind().SetGroupVersionKind(gvks[0])
	}
}

func kstatusOf(obj runtime.Object) (*status.Result, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return status.Compute(&unstructured.Unstructured{Object: content})
}

// objectMap is obj as the JSON that Argo CD and Flux read.
func objectMap(t *testing.T, obj runtime.Object) map[string]any {
	t.Helper()
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return content
}

// asUnstructured converts a typed object (kind set) to unstructured, without the
// empty status a typed object always carries.
func asUnstructured(t *testing.T, obj client.Object) *unstructured.Unstructured {
	t.Helper()
	setKind(obj)
	u := &unstructured.Unstructured{Object: objectMap(t, obj)}
	delete(u.Object, "status")
	return u
}

func statusJSON(obj runtime.Object) string {
	content, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	return fmt.Sprintf("%v", content["status"])
}
