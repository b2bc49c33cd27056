package controllers

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/backends"
)

// ReconcileTimeout bounds one reconcile of either kind: several backend calls,
// each bounded by its own timeout and retries, fit well within it.
const ReconcileTimeout = 2 * time.Minute

// FieldManager and EventSource name the operator in managed fields and events.
const (
	FieldManager = "apitoken-operator"
	EventSource  = "apitoken-operator"
)

// Options are the knobs of the operator that its binary exposes as flags, plus
// the seams the test framework uses to inject faults. Apart from
// CredentialsNamespace, which must be set, the zero value is the production
// operator with defaults.
type Options struct {
	// MaxConcurrentReconciles is how many ApiTokens are reconciled in parallel (default 10).
	MaxConcurrentReconciles int
	// Clock is the time source of both controllers (default the real clock).
	Clock clock.Clock
	// CredentialsNamespace is the only namespace that TokenBackends' admin key
	// Secrets are read from: the operator's own (required).
	CredentialsNamespace string
	// WatchNamespaces, when set, limits the cache (ApiTokens, Secrets, events
	// handled) to these namespaces; cluster-scoped kinds are still watched.
	WatchNamespaces []string

	// BackendTransport, when set, carries every backend client's HTTP requests
	// (the fault transport of the reliability suites).
	BackendTransport http.RoundTripper
	// WrapBackend, when set, wraps each backend client (the crash injector).
	WrapBackend func(backend.Backend) backend.Backend
	// WrapClient, when set, wraps the ApiToken controller's Kubernetes client
	// (the crash injector).
	WrapClient func(client.Client) client.Client
}

// NewScheme returns a scheme with the Kubernetes types and this operator's API.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(tokensv1alpha1.AddToScheme(s))
	return s
}

// NewManager returns a manager set up with this operator's scheme and cache
// options, with both controllers wired by Setup. base carries what differs
// between the binary and the tests (metrics, probes, leader election).
func NewManager(cfg *rest.Config, base ctrl.Options, o Options) (ctrl.Manager, error) {
	if base.Scheme == nil {
		base.Scheme = NewScheme()
	}
	base.Cache = cacheOptions()
	if base.MapperProvider == nil {
		base.MapperProvider = newMemoRESTMapper
	}
	if len(o.WatchNamespaces) > 0 {
		base.Cache.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.WatchNamespaces {
			base.Cache.DefaultNamespaces[ns] = cache.Config{}
		}
	} else if base.NewCache == nil {
		// The ApiToken watch decodes each event once (watch_decode.go). Its
		// informer constructor is not told the namespace of a namespaced cache,
		// so with WatchNamespaces the watches stay client-go's.
		base.NewCache = newCacheWithFastApiTokenWatch
	}
	mgr, err := ctrl.NewManager(cfg, base)
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	if err := Setup(mgr, o); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Setup is the one place that wires the operator into a manager: the backend
// registry, the TokenBackend controller, the ApiToken controller with its index
// and watches, and the backend metrics. The manager must have been created with
// NewManager's cache options (Secrets filtered by the operator's label).
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.CredentialsNamespace == "" {
		return errors.New("no credentials namespace: the namespace of the admin key Secrets must be set")
	}
	registry := NewRegistry()
	recorder := mgr.GetEventRecorder(EventSource)
	// Every write names the operator in managedFields, whatever the binary is
	// called (the API server would take the User-Agent's program name).
	patcher, err := newMetadataPatcher(mgr.GetClient(), mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return err
	}
	k := client.WithFieldOwner(patcher, FieldManager)
	if err := (&TokenBackendReconciler{
		Client:     k,
		APIReader:  mgr.GetAPIReader(),
		Scheme:     mgr.GetScheme(),
		Registry:   registry,
		Recorder:   recorder,
		Clock:      o.Clock,
		NewBackend: o.newBackend,

		CredentialsNamespace: o.CredentialsNamespace,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the TokenBackend controller: %w", err)
	}
	writer, err := newSecretWriter(mgr, mgr.GetClient())
	if err != nil {
		return err
	}
	secrets := client.WithFieldOwner(writer, FieldManager)
	if o.WrapClient != nil {
		k = o.WrapClient(k)
		secrets = o.WrapClient(secrets)
	}
	if err := (&ApiTokenReconciler{
		Client:                  k,
		SecretWriter:            secrets,
		APIReader:               mgr.GetAPIReader(),
		Scheme:                  mgr.GetScheme(),
		Recorder:                recorder,
		Registry:                registry,
		Clock:                   o.Clock,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the ApiToken controller: %w", err)
	}
	observeState(mgr)
	return nil
}

// newBackend builds the client of one TokenBackend: observed by the metrics,
// through the injected transport and wrapper when the tests set them.
func (o Options) newBackend(bo backend.Options) (backend.Backend, error) {
	bo.Observe = observeBackendCall
	if o.BackendTransport != nil {
		bo.Transport = o.BackendTransport
	}
	c, err := backends.New(bo)
	if err != nil {
		return nil, err
	}
	if o.WrapBackend != nil {
		return o.WrapBackend(c), nil
	}
	return c, nil
}

// lastAppliedAnnotation is kubectl apply's copy of the whole manifest: on an
// ApiToken applied from Git it is as large as the spec, and the operator never
// reads it.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// stripForCache drops from a cached ApiToken what the operator never reads: its
// managed fields and kubectl's last-applied annotation; and shares the strings
// that ApiTokens hold alike (internApiToken). Patches are computed between two
// copies of the cached object, so what is not cached is never sent.
func stripForCache(in any) (any, error) {
	if obj, ok := in.(client.Object); ok {
		obj.SetManagedFields(nil)
		if annotations := obj.GetAnnotations(); annotations[lastAppliedAnnotation] != "" {
			delete(annotations, lastAppliedAnnotation)
			obj.SetAnnotations(annotations)
		}
	}
	if at, ok := in.(*tokensv1alpha1.ApiToken); ok {
		internApiToken(at)
	}
	return in, nil
}

// cacheOptions configures the manager's cache: Secrets only with the operator's
// label, so that tens of thousands of unrelated Secrets cost nothing, and as
// metadata only (watched so: no credentials; secretCacheTransform keeps of an
// ApiToken's Secret what tells an edit, of any other only names), Namespaces
// as metadata only, no managed fields on other cached objects, and no last-applied
// annotation on ApiTokens.
func cacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Label:     labels.SelectorFromSet(labels.Set{tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue}),
				Transform: secretCacheTransform,
			},
			&tokensv1alpha1.ApiToken{}: {Transform: stripForCache},
		},
	}
}
