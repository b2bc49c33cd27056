package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

const (
	// DefaultResyncInterval applies when a TokenBackend sets none.
	DefaultResyncInterval = 10 * time.Minute
	// credentialsPollInterval is how often a TokenBackend's admin key Secret is
	// re-read. That Secret is outside the operator's label-filtered Secret cache,
	// so changes to it are polled rather than watched.
	credentialsPollInterval = time.Minute
)

// NewBackendFunc builds a backend client; tests replace it to inject faults.
type NewBackendFunc func(backend.Options) (backend.Backend, error)

// TokenBackendReconciler validates TokenBackends, builds their clients into the
// Registry and reports Ready when the catalog could be fetched.
type TokenBackendReconciler struct {
	client.Client
	// APIReader reads the admin key Secrets, which the Secret cache does not hold.
	APIReader  client.Reader
	Scheme     *runtime.Scheme
	Registry   *Registry
	NewBackend NewBackendFunc
	Clock      clock.PassiveClock
	// Recorder, when set, receives a Warning event each time the backend stops
	// being ready.
	Recorder events.EventRecorder
	// CredentialsNamespace is the only namespace admin key Secrets are read from
	// (the operator's own); a TokenBackend naming another is not Ready.
	CredentialsNamespace string
}

// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=tokenbackends,verbs=list;watch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=tokenbackends/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile keeps the registry's client of one TokenBackend current.
func (r *TokenBackendReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	tb := &tokensv1alpha1.TokenBackend{}
	if err := r.Get(ctx, req.NamespacedName, tb); err != nil {
		if apierrors.IsNotFound(err) {
			r.Registry.remove(&tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{Name: req.Name}})
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	original := tb.DeepCopy()
	defer func() {
		tb.Status.ObservedGeneration = tb.Generation
		r.eventOnFailure(original, tb)
		retErr = errors.Join(retErr, r.patchStatus(ctx, original, tb))
	}()

	opts, err := r.clientOptions(ctx, tb)
	if err != nil {
		r.Registry.remove(tb)
		reason, message := clientFailure(err)
		setBackendConditions(tb, reason, message)
		return ctrl.Result{RequeueAfter: credentialsPollInterval}, nil
	}
	hash := optionsHash(opts)
	now := r.Clock.Now()
	current, known := r.Registry.entry(tb.Name)
	resync := resyncInterval(tb)
	if known && !current.down && current.configHash == hash && now.Sub(current.catalogAt) < resync && isReady(tb.Status.Conditions) {
		if current.resync != resync {
			current.resync = resync
			r.Registry.set(tb, current)
		}
		return ctrl.Result{RequeueAfter: credentialsPollInterval}, nil
	}

	be, err := r.NewBackend(opts)
	if err != nil {
		r.Registry.remove(tb)
		reason, message := clientFailure(err)
		setBackendConditions(tb, reason, message)
		return ctrl.Result{RequeueAfter: credentialsPollInterval}, nil
	}
	catalog, err := be.Catalog(ctx)
	if err != nil {
		if known && current.configHash == hash {
			r.Registry.keepDown(tb.Name) // ApiTokens keep waiting for this backend
		} else {
			r.Registry.remove(tb)
		}
		reason, after := tokensv1alpha1.ReasonBackendUnavailable, backoffWithJitter(5*time.Second)
		switch {
		case errors.Is(err, backend.ErrUnauthorized):
			reason = tokensv1alpha1.ReasonBackendUnauthorized
		case errors.Is(err, backend.ErrRateLimited):
			// A requeue after Retry-After, never a worker waiting it out.
			reason, after = tokensv1alpha1.ReasonBackendThrottled, max(after, backend.RetryAfterOf(err))
		}
		setBackendConditions(tb, reason, "Fetching the catalog failed: "+failureKind(err))
		logf.FromContext(ctx).Info("backend not ready", "reason", reason, "error", err.Error())
		return ctrl.Result{RequeueAfter: after}, nil
	}
	r.Registry.set(tb, registryEntry{configHash: hash, client: be, resync: resync, catalogAt: now})
	if !be.Capabilities().Catalog {
		tb.Status.LatestAPIVersion, tb.Status.Catalog = 0, nil
		setBackendConditions(tb, tokensv1alpha1.ReasonBackendConnected,
			"The backend answered; it has no catalog, so spec.policy alone limits what ApiTokens may ask for")
		return ctrl.Result{RequeueAfter: credentialsPollInterval}, nil
	}
	tb.Status.LatestAPIVersion = int32(catalog.LatestAPIVersion)
	tb.Status.Catalog = catalogStatus(ctx, catalog)
	setBackendConditions(tb, tokensv1alpha1.ReasonCatalogFetched,
		fmt.Sprintf("Catalog fetched: %d scopes, %d contacts, API versions up to %d", len(catalog.Scopes), len(catalog.Contacts), catalog.LatestAPIVersion))
	return ctrl.Result{RequeueAfter: credentialsPollInterval}, nil
}

// eventOnFailure emits a Warning event when the Ready condition turns False or
// changes its reason.
func (r *TokenBackendReconciler) eventOnFailure(original, tb *tokensv1alpha1.TokenBackend) {
	now := meta.FindStatusCondition(tb.Status.Conditions, tokensv1alpha1.ConditionReady)
	if r.Recorder == nil || now == nil || now.Status == metav1.ConditionTrue {
		return
	}
	before := meta.FindStatusCondition(original.Status.Conditions, tokensv1alpha1.ConditionReady)
	if before != nil && before.Status == now.Status && before.Reason == now.Reason {
		return
	}
	r.Recorder.Eventf(tb, nil, corev1.EventTypeWarning, now.Reason, now.Reason, "%s", now.Message)
}

// clientOptions reads the admin key and assembles the client settings. It reads
// no Secret outside CredentialsNamespace, and none for a URL that the client
// would refuse to send the key to.
func (r *TokenBackendReconciler) clientOptions(ctx context.Context, tb *tokensv1alpha1.TokenBackend) (backend.Options, error) {
	if err := backend.CheckTransport(tb.Spec.URL, tb.Spec.AllowInsecureHTTP); err != nil {
		return backend.Options{}, err
	}
	qps, burst := tb.Spec.RateLimit.QPS, tb.Spec.RateLimit.Burst
	if qps == 0 {
		qps = 10
	}
	if burst == 0 {
		burst = 20
	}
	o := backend.Options{
		Type: string(tb.Spec.Type), URL: tb.Spec.URL, CABundle: []byte(tb.Spec.CABundle),
		AllowInsecureHTTP: tb.Spec.AllowInsecureHTTP, QPS: float64(qps), Burst: int(burst),
	}
	if tb.Spec.Hydra != nil {
		o.TokenURL = tb.Spec.Hydra.TokenURL
	}
	ref := tb.Spec.CredentialsSecretRef
	if ref == nil {
		if o.Type == string(tokensv1alpha1.BackendHydra) {
			return o, nil // Hydra's admin API needs no key of its own
		}
		return backend.Options{}, stalled(tokensv1alpha1.ReasonCredentialsInvalid, "credentialsSecretRef is required for type %s", tb.Spec.Type)
	}
	adminKey, err := r.readAdminKey(ctx, ref)
	if err != nil {
		return backend.Options{}, err
	}
	o.AdminKey = adminKey
	return o, nil
}

// readAdminKey reads the admin key from its Secret, which must be in
// CredentialsNamespace.
func (r *TokenBackendReconciler) readAdminKey(ctx context.Context, ref *tokensv1alpha1.SecretKeyReference) (string, error) {
	if ref.Namespace != r.CredentialsNamespace {
		return "", stalled(tokensv1alpha1.ReasonCredentialsInvalid,
			"credentialsSecretRef.namespace must be %s, the operator's namespace: admin key Secrets are read from nowhere else", r.CredentialsNamespace)
	}
	key := ref.Key
	if key == "" {
		key = "apiKey"
	}
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", stalled(tokensv1alpha1.ReasonCredentialsInvalid, "credentials Secret %s/%s not found", ref.Namespace, ref.Name)
		}
		return "", fmt.Errorf("read credentials Secret %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	// Surrounding whitespace is never part of a key: kubectl create secret
	// --from-file keeps the file's trailing newline.
	adminKey := strings.TrimSpace(string(s.Data[key]))
	if adminKey == "" {
		return "", stalled(tokensv1alpha1.ReasonCredentialsInvalid, "credentials Secret %s/%s has no key %q", ref.Namespace, ref.Name, key)
	}
	return adminKey, nil
}

// clientFailure is the Ready reason and message when no backend client could be
// built: what the user must fix (a reason setBackendConditions makes Stalled),
// or else the kind of a passing failure (BackendNotReady, Reconciling), so that
// a repeating failure writes no new status.
func clientFailure(err error) (reason, message string) {
	var stall *stalledError
	switch {
	case errors.As(err, &stall):
		return stall.reason, stall.message
	case errors.Is(err, backend.ErrInsecureHTTP):
		return tokensv1alpha1.ReasonInsecureURL, "spec.url (or spec.hydra.tokenURL) uses plain http:// to a host that is not loopback (127.0.0.0/8, ::1, localhost): use https://, or set spec.allowInsecureHTTP: true"
	case errors.Is(err, backend.ErrInvalidConfig):
		// backend.New builds these from the spec alone: stable, and they say what to fix.
		return tokensv1alpha1.ReasonCredentialsInvalid, err.Error()
	}
	// Anything else (the Kubernetes API did not answer the read of the admin key
	// Secret) passes: the TokenBackend is retried, Reconciling, not Stalled.
	return tokensv1alpha1.ReasonBackendNotReady, "The backend client could not be set up: " + failureKind(err)
}

func optionsHash(o backend.Options) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%s\x00%g\x00%d", o.Type, o.URL, o.TokenURL, o.AdminKey, o.CABundle, o.QPS, o.Burst))
	return hex.EncodeToString(sum[:])
}

func resyncInterval(tb *tokensv1alpha1.TokenBackend) time.Duration {
	if tb.Spec.ResyncInterval == nil || tb.Spec.ResyncInterval.Duration < 5*time.Second {
		return DefaultResyncInterval
	}
	return tb.Spec.ResyncInterval.Duration
}

// backoffWithJitter adds up to 10% so that many objects do not wake at once.
func backoffWithJitter(d time.Duration) time.Duration {
	return d + rand.N(d/10+1)
}

func isReady(conditions []metav1.Condition) bool {
	return meta.IsStatusConditionTrue(conditions, tokensv1alpha1.ConditionReady)
}

// setBackendConditions sets a TokenBackend's Ready, Reconciling and Stalled
// conditions, in the ApiToken's vocabulary, from the outcome's reason. This
// switch alone decides which reasons need a change from the user (Stalled: the
// admin key Secret, the URL, the client settings) and which are retried
// (Reconciling: an unreachable or throttling backend).
func setBackendConditions(tb *tokensv1alpha1.TokenBackend, reason, message string) {
	ready, reconciling, stalled := metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionFalse
	reconcilingMessage, stalledMessage := "Up to date", "Up to date"
	switch reason {
	case tokensv1alpha1.ReasonCatalogFetched, tokensv1alpha1.ReasonBackendConnected:
		ready = metav1.ConditionTrue
	case tokensv1alpha1.ReasonCredentialsInvalid, tokensv1alpha1.ReasonBackendUnauthorized, tokensv1alpha1.ReasonInsecureURL:
		stalled, stalledMessage, reconcilingMessage = metav1.ConditionTrue, message, "Waiting for a change"
	default:
		reconciling, reconcilingMessage, stalledMessage = metav1.ConditionTrue, message, "Not stalled"
	}
	for _, c := range []metav1.Condition{
		{Type: tokensv1alpha1.ConditionReady, Status: ready, Message: message},
		{Type: tokensv1alpha1.ConditionReconciling, Status: reconciling, Message: reconcilingMessage},
		{Type: tokensv1alpha1.ConditionStalled, Status: stalled, Message: stalledMessage},
	} {
		c.Reason, c.ObservedGeneration = reason, tb.Generation
		meta.SetStatusCondition(&tb.Status.Conditions, c)
	}
}

func (r *TokenBackendReconciler) patchStatus(ctx context.Context, original, tb *tokensv1alpha1.TokenBackend) error {
	if apiequality.Semantic.DeepEqual(original.Status, tb.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, tb, client.MergeFrom(original)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("patch TokenBackend status: %w", err)
	}
	return nil
}

// SetupWithManager registers the controller.
func (r *TokenBackendReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.NewBackend == nil {
		r.NewBackend = Options{}.newBackend
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&tokensv1alpha1.TokenBackend{}).
		WithOptions(controller.Options{ReconciliationTimeout: ReconcileTimeout}).
		WatchesRawSource(source.Channel(r.Registry.recheck, &handler.TypedEnqueueRequestForObject[*tokensv1alpha1.TokenBackend]{})).
		Named("tokenbackend").
		Complete(r)
}
