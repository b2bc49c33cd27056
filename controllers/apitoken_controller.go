// Package controllers reconciles ApiTokens and TokenBackends. It owns both
// reconcilers, their pure decisions (policies.go, lifecycle.go, policy.go: table
// tested without a cluster), the registry of backend clients, the operator's
// metrics, and Setup/NewManager, the one place that wires them (setup.go). It
// talks to backends only through pkg/backend's Backend interface. It must not
// import internal/tokenservice or test/... (its own tests may use test/framework).
// docs/architecture.md maps where each concern lives.
package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// ApiTokenReconciler keeps each ApiToken's backend token as declared and its
// credentials in a Secret.
type ApiTokenReconciler struct {
	client.Client
	// APIReader finds Secrets that the label-filtered cache does not hold.
	APIReader client.Reader
	// SecretWriter creates and updates Secrets (secret_writer.go); nil: Client.
	SecretWriter client.Writer
	Scheme       *runtime.Scheme
	Recorder     events.EventRecorder
	Registry     *Registry
	// Clock is the time source, timers included (the read schedule's).
	Clock clock.Clock
	// MaxConcurrentReconciles bounds the workers; default 10.
	MaxConcurrentReconciles int

	// written holds the resourceVersion of each ApiToken's last status write by
	// this process, until the cache has it (see cacheBehindOwnWrite).
	written sync.Map // types.UID -> uint64
	// reads decides when each backend token is read next, and makes the routine
	// reads of Ready ApiTokens between passes (read_schedule.go).
	reads *readSchedule
	// owned holds the backend tokens confirmed as each ApiToken's (ownership.go).
	owned *ownedTokens
	// startup lets the new leader's re-checks through one at a time (startup_gate.go).
	startup *startupGate
}

// RBAC: only the verbs the code sends (test/e2e TestOperatorRBACMatchesItsRequests
// compares them with the API server's audit log). ApiTokens, TokenBackends and
// Namespaces are read through the manager's cache only (list and watch, never
// get) and ApiTokens are written with patches only. Secrets: get through the API
// reader (a name taken by a foreign Secret), update to rewrite, patch to orphan.
// apitokens/finalizers update is checked by the OwnerReferencesPermissionEnforcement
// admission plugin, where it runs, for the Secrets' blockOwnerDeletion.
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens,verbs=list;watch;patch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens/status,verbs=patch
// +kubebuilder:rbac:groups=tokens.apitoken.dev,resources=apitokens/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one ApiToken to its declared state.
func (r *ApiTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	at := &tokensv1alpha1.ApiToken{}
	if err := r.Get(ctx, req.NamespacedName, at); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetGone(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.cacheBehindOwnWrite(at) {
		return ctrl.Result{RequeueAfter: cacheLagRetry}, nil
	}
	lease, ok := r.reads.claim(at)
	if !ok {
		return ctrl.Result{}, nil // its reader's read is in flight; the read's end queues it
	}
	if lease.firstPass && looksSettled(at, r.Clock.Now()) {
		leave, err := r.startup.enter(ctx)
		if err != nil {
			lease.end(at, 0, false, specSum{})
			return ctrl.Result{}, err
		}
		defer leave() // after the status patch below
	}
	p := &pass{at: at, original: at.DeepCopy(), reads: lease}
	defer func() {
		if at.DeletionTimestamp.IsZero() || controllerutil.ContainsFinalizer(at, tokensv1alpha1.Finalizer) {
			retErr = errors.Join(retErr, r.patchStatus(ctx, p.original, at))
		}
		if p.ready && retErr == nil {
			lease.end(at, p.resync, true, p.specDigest())
		} else {
			lease.end(at, p.resync, false, specSum{})
		}
	}()

	if isPaused(at) {
		return r.reconcilePaused(ctx, p)
	}
	resume(at)
	if !at.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, p)
	}
	if err := r.ensureFinalizer(ctx, at); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.resolveBackend(ctx, p); err != nil {
		return r.classify(at, err, DefaultResyncInterval)
	}
	// Incident response is never blocked: while the ApiToken may not be applied
	// (namespace access lost, policy tightened, values the backend refuses), a due
	// reset, rotation or disable of its own token is still carried out.
	if err := r.checkAccess(ctx, p); err != nil {
		return r.respondWhileBlocked(ctx, p, err)
	}
	if err := r.checkSecretAvailable(ctx, p); err != nil {
		return r.classify(at, err, p.resync)
	}
	if err := checkLayout(p.layout()); err != nil {
		return r.respondWhileBlocked(ctx, p, err)
	}
	if !p.caps.RetrievableSecrets {
		if err := r.recoverPending(ctx, p); err != nil {
			return r.backendFailed(p, err)
		}
	}
	err := r.reconcileBackendToken(ctx, p)
	if isStall(err) {
		return r.respondWhileBlocked(ctx, p, err)
	}
	if err != nil {
		return r.backendFailed(p, err)
	}
	if err := r.reconcileSecret(ctx, p); err != nil {
		forgetUndeliveredChange(p, err)
		if discardErr := r.discardUnusedToken(ctx, p, err); discardErr != nil {
			err = discardErr // the token is still in the backend: the retry deletes it
		}
		return r.backendFailed(p, err)
	}
	if err := r.rollForNewCredentials(ctx, p); err != nil {
		return r.classify(at, err, p.resync)
	}
	retireAt, err := r.retireTokens(ctx, p)
	if err != nil {
		return r.backendFailed(p, err)
	}
	markReadyOrDeferred(at, r.Clock.Now())
	p.ready = true
	if _, due := dueCredentialChange(at, r.Clock.Now()); due {
		return ctrl.Result{RequeueAfter: cacheLagRetry}, nil // a deferred rotation whose slot this pass freed
	}
	return ctrl.Result{RequeueAfter: nextWake(r.Clock.Now(), at.Status.NextRotationTime, retireAt)}, nil
}

// forgetGone drops what this process remembers of an ApiToken that no longer
// exists, deleted without a pass that released it (paused from creation, or
// never given a finalizer).
func (r *ApiTokenReconciler) forgetGone(key types.NamespacedName) {
	if uid, ok := r.reads.forgetName(key); ok {
		r.written.Delete(uid)
		r.owned.forget(uid)
	}
}

// rollForNewCredentials rolls the restart targets when this pass recorded a
// credential change that consumers must pick up, or delivered the Secret's data
// rendered from another template (renderedAnew). On a failure it records nothing
// of the change: the next pass replays it (same key, same credentials) and rolls
// the targets then.
func (r *ApiTokenReconciler) rollForNewCredentials(ctx context.Context, p *pass) error {
	change, ok := newCredentialChange(p.original, p.at)
	if (!ok || !rollsTargets(change.Type)) && !renderedAnew(p.original, p.at) {
		return nil
	}
	ref := credentialsRef(p.delivered.accountSID, p.delivered.generation)
	if digest := p.at.Status.SecretDigest; digest != "" {
		ref += "/" + digest[:8]
	}
	if err := r.rollRestartTargets(ctx, p.at, ref); err != nil {
		p.at.Status = *p.original.Status.DeepCopy()
		return err
	}
	return nil
}

// renderedAnew reports a pass that delivered a Secret rendered anew: its
// layout's digest changed (a template, the formats, the scopes, the API version
// or the backend URL) on an ApiToken whose Secret had been delivered before.
func renderedAnew(original, at *tokensv1alpha1.ApiToken) bool {
	return original.Status.SecretName != "" && at.Status.SecretDigest != original.Status.SecretDigest
}

// forgetUndeliveredChange records nothing of a credential change whose Secret
// could not be written for a reason a retry may cure: the next pass replays it
// (same key, same credentials), delivers the credentials and rolls the restart
// targets then, as after a failed roll. Recorded, the change would be delivered
// by a later pass that no longer sees it as new, and the targets never rolled.
// A Secret that cannot be written at all (a foreign one holds the name) keeps
// the change: nothing is rolled for a Secret that is not the ApiToken's.
func forgetUndeliveredChange(p *pass, secretErr error) {
	change, ok := newCredentialChange(p.original, p.at)
	// A template that cannot be rendered keeps the change too: its credentials
	// are in the source Secret, written before the rendering, and the pass that
	// finds the template fixed delivers them from there.
	if ok && rollsTargets(change.Type) && !secretCannotBeWritten(secretErr) && !isTemplateError(secretErr) {
		p.at.Status = *p.original.Status.DeepCopy()
	}
}

// respondWhileBlocked ends a pass that may not apply the ApiToken (blocked is a
// stall: policy, namespace access, a value the backend refuses) after carrying
// out what incident response needs of its own token: a due reset or rotation,
// disable, narrower scopes, the retirement of old tokens. The token's other
// settings are left as they are in the backend (never changed to a spec that is
// not allowed); the ApiToken stays Stalled with blocked's reason. Anything but a
// stall (an unreachable backend) is classified as usual. The credential change,
// if any, is told apart from the status as it was at the start of this response.
func (r *ApiTokenReconciler) respondWhileBlocked(ctx context.Context, p *pass, blocked error) (ctrl.Result, error) {
	at := p.at
	if !isStall(blocked) || at.Status.AccountSID == "" || p.be == nil {
		return r.classify(at, blocked, p.resyncOrDefault())
	}
	response := *p
	response.original, response.lookup = at.DeepCopy(), secretLookup{}
	var err error
	if incidentDue(at, r.Clock.Now(), blocked) {
		err = r.respondToIncident(ctx, &response, narrowsScopes(blocked))
	}
	if response.observed != nil {
		// What the Secret renders must be what the backend token holds, not a
		// spec that may not be applied.
		response.renderScopes = backend.NormalizeSet(response.observed.Scopes)
	}
	if err == nil && (response.creds != nil || response.at.Status.AccountSID != response.original.Status.AccountSID) {
		if err = r.reconcileSecret(ctx, &response); err == nil {
			err = r.rollForNewCredentials(ctx, &response)
		} else {
			forgetUndeliveredChange(&response, err)
		}
	}
	if err == nil {
		_, err = r.retireTokens(ctx, &response)
	}
	if err != nil && !isStall(err) {
		return r.backendFailed(p, err)
	}
	return r.classify(at, blocked, p.resync)
}

// backendFailed reports a backend that could not be reached to the registry, so
// that the ApiTokens using it wait for its recovery, then classifies the error.
func (r *ApiTokenReconciler) backendFailed(p *pass, err error) (ctrl.Result, error) {
	if unreachable(err) {
		r.Registry.markDown(backendName(p.at))
	}
	return r.classify(p.at, err, p.resyncOrDefault())
}

// unreachable reports a failure that says the backend is down rather than that
// one request failed: no connection, or a gateway's 502/503/504 after retries.
func unreachable(err error) bool {
	apiErr, ok := errors.AsType[*backend.APIError](err)
	if !ok || !errors.Is(err, backend.ErrUnavailable) {
		return false
	}
	switch apiErr.StatusCode {
	case 0, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// ensureFinalizer adds the finalizer before anything exists in the backend.
func (r *ApiTokenReconciler) ensureFinalizer(ctx context.Context, at *tokensv1alpha1.ApiToken) error {
	if controllerutil.ContainsFinalizer(at, tokensv1alpha1.Finalizer) {
		return nil
	}
	// The merge patch client.MergeFrom would compute, written out: the
	// finalizers (a list, replaced whole) and the resourceVersion it was read
	// at, so that a concurrent change is a conflict, not overwritten.
	finalizers := append(slices.Clone(at.Finalizers), tokensv1alpha1.Finalizer)
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": finalizers, "resourceVersion": at.ResourceVersion}})
	if err != nil {
		return fmt.Errorf("add finalizer: %w", err)
	}
	handle := metadataHandle(at)
	if err := r.Patch(ctx, handle, client.RawPatch(types.MergePatchType, body)); err != nil {
		return fmt.Errorf("add finalizer: %w", err)
	}
	at.Finalizers, at.ResourceVersion = handle.Finalizers, handle.ResourceVersion
	return nil
}

// metadataHandle is an ApiToken's metadata alone. Patched through it, the API
// server answers with the metadata (in protobuf) rather than the whole object in
// JSON: the hot writes (finalizer, status) cost both sides less, and the pass
// needs nothing back from them but the resourceVersion.
func metadataHandle(at *tokensv1alpha1.ApiToken) *metav1.PartialObjectMetadata {
	handle := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: at.Name, Namespace: at.Namespace}}
	handle.SetGroupVersionKind(tokensv1alpha1.GroupVersion.WithKind("ApiToken"))
	return handle
}

// releasingBackend resolves the backend to release the ApiToken's own tokens at
// deletion: a namespace that lost access may still release what it owns, so that
// deletion never hangs on it.
func (r *ApiTokenReconciler) releasingBackend(ctx context.Context, p *pass) error {
	err := r.resolveBackend(ctx, p)
	var stall *stalledError
	if errors.As(err, &stall) && stall.reason == tokensv1alpha1.ReasonBackendNotFound {
		return stalled(stall.reason, "TokenBackend %q does not exist: the ApiToken waits for it to release its backend token; set spec.deletionPolicy to Orphan to let it go without", backendName(p.at))
	}
	return err
}

// resolveBackend reads the ApiToken's TokenBackend (once a pass) into the pass,
// and its client and resync interval once the backend exists and is ready.
func (r *ApiTokenReconciler) resolveBackend(ctx context.Context, p *pass) error {
	if err := r.readTokenBackend(ctx, p); err != nil {
		return err
	}
	name, tb := p.tb.Name, p.tb
	be, resync, state := r.Registry.get(name)
	if state == backendDown {
		return &waitingError{reason: tokensv1alpha1.ReasonBackendUnavailable,
			message: fmt.Sprintf("TokenBackend %q is unreachable; waiting for it to answer again", name), after: time.Minute}
	}
	if state == backendMissing {
		// A backend that reports Ready but is not registered yet is one this process
		// has not reconciled since it started: wait for the registry's notification
		// without touching the status, so that a restart writes nothing.
		return &waitingError{reason: tokensv1alpha1.ReasonBackendNotReady, message: fmt.Sprintf("TokenBackend %q is not ready", name),
			after: 30 * time.Second, quiet: isReady(tb.Status.Conditions)}
	}
	p.be, p.caps, p.resync = be, be.Capabilities(), resync
	if !p.caps.RetrievableSecrets {
		p.be = writeAheadBackend{Backend: be, r: r, p: p}
	}
	return nil
}

// readTokenBackend reads the ApiToken's TokenBackend into the pass, once a pass.
func (r *ApiTokenReconciler) readTokenBackend(ctx context.Context, p *pass) error {
	if p.tb != nil {
		return nil
	}
	name := backendName(p.at)
	tb := &tokensv1alpha1.TokenBackend{}
	if err := r.Get(ctx, types.NamespacedName{Name: name}, tb); err != nil {
		if apierrors.IsNotFound(err) {
			return stalled(tokensv1alpha1.ReasonBackendNotFound, "TokenBackend %q does not exist", name)
		}
		return fmt.Errorf("get TokenBackend %s: %w", name, err)
	}
	p.tb = tb
	return nil
}

// checkAccess stalls an ApiToken that its TokenBackend does not admit: a
// namespace outside allowedNamespaces, a spec its type cannot carry out, or one
// its catalog or policy does not allow.
func (r *ApiTokenReconciler) checkAccess(ctx context.Context, p *pass) error {
	if err := r.checkNamespaceAllowed(ctx, p.at, p.tb); err != nil {
		return err
	}
	if err := checkCapabilities(p); err != nil {
		return err
	}
	return checkPolicy(p.at, p.tb)
}

func (r *ApiTokenReconciler) checkNamespaceAllowed(ctx context.Context, at *tokensv1alpha1.ApiToken, tb *tokensv1alpha1.TokenBackend) error {
	if tb.Spec.AllowedNamespaces == nil {
		return nil
	}
	selector, err := metav1.LabelSelectorAsSelector(tb.Spec.AllowedNamespaces)
	if err != nil {
		return stalled(tokensv1alpha1.ReasonNamespaceNotAllowed, "TokenBackend %q has an invalid allowedNamespaces selector: %v", tb.Name, err)
	}
	matches, err := r.namespaceMatches(ctx, at.Namespace, selector)
	if err != nil {
		return err
	}
	if !matches {
		return stalled(tokensv1alpha1.ReasonNamespaceNotAllowed, "TokenBackend %q does not allow namespace %q", tb.Name, at.Namespace)
	}
	return nil
}

// namespaceMatches reports whether the namespace's labels (from the metadata
// cache) match the selector.
func (r *ApiTokenReconciler) namespaceMatches(ctx context.Context, namespace string, selector labels.Selector) (bool, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return false, fmt.Errorf("get namespace %s: %w", namespace, err)
	}
	return selector.Matches(labels.Set(ns.Labels)), nil
}

func backendName(at *tokensv1alpha1.ApiToken) string {
	if at.Spec.BackendRef.Name != "" {
		return at.Spec.BackendRef.Name
	}
	return tokensv1alpha1.DefaultBackendName
}

func (r *ApiTokenReconciler) event(at *tokensv1alpha1.ApiToken, eventType, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(at, nil, eventType, reason, reason, note, args...)
	}
}

// SetupWithManager registers the controller, its index and its watches.
func (r *ApiTokenReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MaxConcurrentReconciles <= 0 {
		r.MaxConcurrentReconciles = 10
	}
	if r.SecretWriter == nil {
		r.SecretWriter = r.Client
	}
	r.owned = newOwnedTokens()
	r.startup = newStartupGate(r.Clock)
	r.reads = newReadSchedule(r.Registry, r.Clock, r.MaxConcurrentReconciles)
	r.Registry.onRemove(r.reads.dropBackend)
	// ApiTokens are not indexed by backend: an index costs every cached ApiToken
	// two entries (the cache's memory per token), for a lookup made only when a
	// TokenBackend changes, where a scan of the cache without copies will do.
	tokensOfBackend := func(ctx context.Context, tb *tokensv1alpha1.TokenBackend) []reconcile.Request {
		return r.requestsFor(ctx, func(at *tokensv1alpha1.ApiToken) bool { return backendName(at) == tb.Name })
	}
	// A namespace's labels decide which TokenBackends admit its ApiTokens.
	tokensInNamespace := func(ctx context.Context, ns client.Object) []reconcile.Request {
		return r.requestsFor(ctx, nil, client.InNamespace(ns.GetName()))
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&tokensv1alpha1.ApiToken{}, builder.WithPredicates(r.forgetSeenWrites(), predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Owns(&corev1.Secret{}, builder.OnlyMetadata, builder.WithPredicates(notCreated())).
		Watches(&tokensv1alpha1.TokenBackend{}, enqueueBehindOthers(func(ctx context.Context, o client.Object) []reconcile.Request {
			return tokensOfBackend(ctx, o.(*tokensv1alpha1.TokenBackend))
		}), builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, readinessChangedPredicate(), catalogChangedPredicate()))).
		WatchesRawSource(source.Channel(r.Registry.changed, enqueueBehindOthers(tokensOfBackend))).
		WatchesMetadata(&corev1.Namespace{}, enqueueBehindOthers(tokensInNamespace), builder.WithPredicates(labelsChanged())).
		WatchesRawSource(source.Func(r.reads.start)).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			// Failures back off from 500ms to 5 minutes per ApiToken: a backend that is
			// down costs a few calls per token per minute, not a hot loop.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](500*time.Millisecond, 5*time.Minute),
			// A pass that hangs (a backend that accepts and never answers within
			// each call's own timeout, retries included) gives its worker back.
			ReconciliationTimeout: ReconcileTimeout,
			LogConstructor:        passLogger(mgr.GetLogger()),
		}).
		Named("apitoken").
		Complete(r)
}

// forgetSeenWrites lets every ApiToken event through, and forgets the status
// write an update shows the cache has caught up with (cacheBehindOwnWrite):
// else each ApiToken's last write would be kept until its next pass, which a
// Ready ApiToken may not have for as long as nothing changes.
func (r *ApiTokenReconciler) forgetSeenWrites() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		if at, ok := e.ObjectNew.(*tokensv1alpha1.ApiToken); ok {
			r.cacheBehindOwnWrite(at)
		}
		return true
	}}
}

// passLogger names each pass's log lines as controller-runtime's default does
// (controller, kind, namespace, name; it adds the reconcileID), with the
// ApiToken as "namespace/name" text: the default's object reference is
// encoded by reflection. The pass's pairs are encoded only when a line is
// written (lazyValues): most passes write none, and make bench counted the
// copies of the logger made for them among the operator's allocations.
func passLogger(base logr.Logger) func(*reconcile.Request) logr.Logger {
	log := lazyValues(base.WithValues("controller", "apitoken", "controllerGroup", tokensv1alpha1.GroupVersion.Group, "controllerKind", "ApiToken"))
	return func(req *reconcile.Request) logr.Logger {
		if req == nil {
			return log
		}
		return log.WithValues("ApiToken", req.String(), "namespace", req.Namespace, "name", req.Name)
	}
}

// requestsFor lists the cached ApiTokens that match opts, and keep when set, as
// requests. Only the cached objects are read: no copy of thousands of them.
func (r *ApiTokenReconciler) requestsFor(ctx context.Context, keep func(*tokensv1alpha1.ApiToken) bool, opts ...client.ListOption) []reconcile.Request {
	list := &tokensv1alpha1.ApiTokenList{}
	if err := r.List(ctx, list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		if at := &list.Items[i]; keep == nil || keep(at) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: at.Namespace, Name: at.Name}})
		}
	}
	return reqs
}

// enqueueBehindOthers maps an event to ApiTokens and queues them at low priority.
// A TokenBackend that registers (at every start) or changes re-checks all of its
// ApiTokens; a user's new or changed ApiToken must not wait behind thousands of
// them, so these go after everything else in the priority queue.
func enqueueBehindOthers[T client.Object](toRequests func(context.Context, T) []reconcile.Request) handler.TypedEventHandler[T, reconcile.Request] {
	add := func(ctx context.Context, obj T, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		reqs := toRequests(ctx, obj)
		if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(handler.LowPriority)}, reqs...)
			return
		}
		for _, req := range reqs {
			q.Add(req)
		}
	}
	return handler.TypedFuncs[T, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		GenericFunc: func(ctx context.Context, e event.TypedGenericEvent[T], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
	}
}

// notCreated passes every event but creations, and none of the operator's
// internal Secrets (source and pending). The operator's own Secrets are the only
// ones with its label and an ApiToken as controller, and a pass makes them: the
// watch's report that one exists (or, at start, the initial list of all of
// them) needs no second pass of its ApiToken, which has its own. Updates and
// deletions of the Secret by others are what the Secret watch is for. The
// internal Secrets are written and deleted by the passes themselves (a pending
// Secret is deleted in the pass that delivers it) and are read only when a pass
// needs them: an event of theirs would be a second pass that finds nothing to do.
func notCreated() predicate.Predicate {
	internal := func(o client.Object) bool { return o.GetLabels()[tokensv1alpha1.InternalSecretLabel] != "" }
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(e event.UpdateEvent) bool { return !internal(e.ObjectNew) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return !internal(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return !internal(e.Object) },
	}
}

// labelsChanged passes updates that change an object's labels, and nothing else:
// the initial list of namespaces at start needs no pass.
func labelsChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
		},
	}
}

// deletionPredicate passes updates that start a deletion.
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// readinessChangedPredicate passes TokenBackend updates whose Ready condition flipped.
func readinessChangedPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		oldTB, okOld := e.ObjectOld.(*tokensv1alpha1.TokenBackend)
		newTB, okNew := e.ObjectNew.(*tokensv1alpha1.TokenBackend)
		return okOld && okNew && isReady(oldTB.Status.Conditions) != isReady(newTB.Status.Conditions)
	}}
}
