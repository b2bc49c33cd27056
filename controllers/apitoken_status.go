package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// stalledError is a failure that retrying cannot cure: the user must change
// something. On an ApiToken it becomes Stalled=True with its reason, and one
// Warning event; on a TokenBackend, Stalled=True too (setBackendConditions). Its message is
// built from the spec, so it stays the same until the user acts.
type stalledError struct {
	reason  string
	message string
}

func (e *stalledError) Error() string { return e.message }

func stalled(reason, format string, args ...any) error {
	return &stalledError{reason: reason, message: fmt.Sprintf(format, args...)}
}

// waitingError is a wait for something outside the ApiToken, such as its backend
// becoming ready: Reconciling=True and a retry after the given time.
type waitingError struct {
	reason  string
	message string
	after   time.Duration
	// quiet leaves the conditions as they are: the wait is expected to be short.
	quiet bool
}

func (e *waitingError) Error() string { return e.message }

// classify turns a phase error into conditions and the controller's next step:
// stalled errors wait for a change (with a slow safety resync), rate limits wait
// for Retry-After, other errors go back to the work queue's exponential backoff.
func (r *ApiTokenReconciler) classify(at *tokensv1alpha1.ApiToken, err error, resync time.Duration) (ctrl.Result, error) {
	stall, wait := stallOrWait(at, err)
	if stall != nil {
		if !isStalledWith(at, stall) {
			r.event(at, corev1.EventTypeWarning, stall.reason, "%s", stall.message)
		}
		markStalled(at, stall.reason, stall.message)
		return ctrl.Result{RequeueAfter: backoffWithJitter(resync)}, nil
	}
	if wait != nil {
		if !wait.quiet {
			markReconciling(at, wait.reason, wait.message)
		}
		return ctrl.Result{RequeueAfter: wait.after}, nil
	}
	reason := tokensv1alpha1.ReasonProgressing
	if errors.Is(err, backend.ErrUnavailable) || errors.Is(err, backend.ErrRateLimited) || errors.Is(err, backend.ErrConflict) {
		reason = tokensv1alpha1.ReasonBackendUnavailable
	}
	markReconciling(at, reason, retryMessage(err))
	return ctrl.Result{}, err
}

// retryMessage is the condition message of a failure retried with backoff. It
// stays the same while the failure is of the same kind, so that a repeating
// failure writes no new status; the error itself is logged by controller-runtime.
func retryMessage(err error) string {
	return "Retrying: " + failureKind(err)
}

// failureKind describes an error by its kind: for the backend, the call and the
// HTTP status; for the Kubernetes API, the status reason. It never quotes an
// error's text: that names addresses and ports, which differ between attempts,
// and a backend's texts are untrusted (one could echo a secret).
func failureKind(err error) string {
	if apiErr, ok := errors.AsType[*backend.APIError](err); ok {
		return backendFailureKind(apiErr)
	}
	if errors.Is(err, backend.ErrUnavailable) {
		return "the backend is unavailable" // the client gave up before a request went out
	}
	if reason := apierrors.ReasonForError(err); reason != metav1.StatusReasonUnknown {
		return fmt.Sprintf("the Kubernetes API answered %s", reason)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "the operation timed out"
	case errors.Is(err, context.Canceled):
		return "the operation was canceled"
	}
	return "an unexpected error occurred (the operator's log has it)"
}

// backendFailureKind names a failed backend call by its call and HTTP status.
// Without a status no answer came; with a 2xx the answer could not be decoded:
// both are told apart from a refusal, which the status names.
func backendFailureKind(e *backend.APIError) string {
	switch {
	case e.StatusCode == 0:
		return fmt.Sprintf("the backend could not be reached (%s)", e.Call)
	case e.StatusCode < 300:
		return fmt.Sprintf("the backend's answer to %s could not be read", e.Call)
	}
	status := strings.TrimSpace(fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode)))
	return fmt.Sprintf("the backend answered %s with %s", e.Call, status)
}

// stallOrWait sorts an error into a stall (the user must act), a wait (for
// something outside the ApiToken), or neither (retry with backoff).
func stallOrWait(at *tokensv1alpha1.ApiToken, err error) (*stalledError, *waitingError) {
	var stall *stalledError
	var wait *waitingError
	var conflict secretConflictError
	var apiErr *backend.APIError
	switch {
	case errors.As(err, &stall):
		return stall, nil
	case errors.As(err, &wait):
		return nil, wait
	case errors.As(err, &conflict):
		return &stalledError{reason: tokensv1alpha1.ReasonSecretConflict, message: conflict.Error()}, nil
	case errors.Is(err, backend.ErrInvalid) && errors.As(err, &apiErr):
		return &stalledError{reason: tokensv1alpha1.ReasonBackendRejected, message: rejectionMessage(at, apiErr)}, nil
	case errors.Is(err, backend.ErrUnauthorized):
		return nil, &waitingError{reason: tokensv1alpha1.ReasonBackendUnauthorized, message: "The backend refused the admin key; check the TokenBackend's credentials", after: time.Minute}
	case errors.Is(err, backend.ErrRateLimited) && backend.RetryAfterOf(err) > 0:
		// Requeued after Retry-After: the worker is free for other ApiTokens.
		return nil, &waitingError{reason: tokensv1alpha1.ReasonBackendThrottled, message: "The backend asked to slow down; retrying after its Retry-After", after: backend.RetryAfterOf(err)}
	}
	return nil, nil
}

// rejectionMessage explains a backend's 422 with the values from the spec that the
// backend named, never with the backend's own text, which is untrusted.
func rejectionMessage(at *tokensv1alpha1.ApiToken, e *backend.APIError) string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("The backend rejected the request (HTTP %d)", e.StatusCode)
	}
	desired := desiredToken(at)
	parts := make([]string, 0, len(e.Fields))
	for _, f := range e.Fields {
		parts = append(parts, describeField(desired, f.Field))
	}
	return "The backend rejected the token: " + strings.Join(parts, "; ")
}

// describeField names a field the backend rejected, with the value that was sent.
func describeField(d backend.CreateRequest, field string) string {
	name, index, indexed := strings.Cut(strings.TrimSuffix(field, "]"), "[")
	i, err := strconv.Atoi(index)
	inList := func(list []string) string {
		if indexed && err == nil && i >= 0 && i < len(list) {
			return fmt.Sprintf("%s %q is not accepted", name, list[i])
		}
		return name + " is not accepted"
	}
	switch name {
	case "scopes":
		return inList(d.Scopes) + " (unknown scope?)"
	case "developerEmails":
		return inList(d.DeveloperEmails)
	case "primaryContact":
		return fmt.Sprintf("primaryContact %q is not a user of the backend account", d.PrimaryContact)
	case "apiVersion":
		if d.APIVersion != nil {
			return fmt.Sprintf("apiVersion %d is not offered by the backend (or is below the token's current version)", *d.APIVersion)
		}
		return "apiVersion is not accepted"
	case "name":
		return fmt.Sprintf("displayName %q is not accepted", d.Name)
	}
	return field + " is not accepted"
}

func isStalledWith(at *tokensv1alpha1.ApiToken, s *stalledError) bool {
	c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == s.reason && c.Message == s.message
}

// setCondition records a condition for the generation at hand. Only the mark*
// functions call it, and they always set all three conditions, so that
// status.observedGeneration never claims a generation whose outcome is unknown.
func setCondition(at *tokensv1alpha1.ApiToken, typ string, status metav1.ConditionStatus, reason, message string) {
	at.Status.ObservedGeneration = at.Generation
	meta.SetStatusCondition(&at.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: at.Generation,
	})
}

func markReady(at *tokensv1alpha1.ApiToken) {
	message := fmt.Sprintf("Token %s is %s; credentials are in Secret %s", at.Status.AccountSID, at.Status.State, at.Status.SecretName)
	setCondition(at, tokensv1alpha1.ConditionReady, metav1.ConditionTrue, tokensv1alpha1.ReasonReady, message)
	setCondition(at, tokensv1alpha1.ConditionReconciling, metav1.ConditionFalse, tokensv1alpha1.ReasonReady, "Up to date")
	setCondition(at, tokensv1alpha1.ConditionStalled, metav1.ConditionFalse, tokensv1alpha1.ReasonReady, "Up to date")
}

// markReadyOrDeferred marks a pass that ended with the token as declared: Ready,
// or, while a rotation waits for a retiring token to be deleted, Ready with
// Reconciling True, reason RotationDeferred (the credentials work; a change is
// pending).
func markReadyOrDeferred(at *tokensv1alpha1.ApiToken, now time.Time) {
	markReady(at)
	if rotationDeferred(at, now) {
		message := fmt.Sprintf("A rotation waits: %d old tokens are retiring, the most an ApiToken keeps; it runs when the next is deleted", len(at.Status.RetiringTokens))
		setCondition(at, tokensv1alpha1.ConditionReconciling, metav1.ConditionTrue, tokensv1alpha1.ReasonRotationDeferred, message)
	}
}

func markReconciling(at *tokensv1alpha1.ApiToken, reason, message string) {
	setCondition(at, tokensv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(at, tokensv1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, message)
	setCondition(at, tokensv1alpha1.ConditionStalled, metav1.ConditionFalse, reason, "Not stalled")
}

func markStalled(at *tokensv1alpha1.ApiToken, reason, message string) {
	setCondition(at, tokensv1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	setCondition(at, tokensv1alpha1.ConditionReconciling, metav1.ConditionFalse, reason, "Waiting for a change")
	setCondition(at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, reason, message)
}

// patchStatus writes the status once, only when it changed, against the object
// as it was read.
func (r *ApiTokenReconciler) patchStatus(ctx context.Context, original, at *tokensv1alpha1.ApiToken) error {
	known, _ := r.owned.known(at.UID)
	trackKnownTokens(&at.Status, known, r.Clock.Now(), rotationOverlap(at))
	if apiequality.Semantic.DeepEqual(original.Status, at.Status) {
		return nil
	}
	patch, err := statusMergePatch(original, at)
	if err != nil {
		return err
	}
	handle := metadataHandle(at)
	if err := r.Status().Patch(ctx, handle, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	at.ResourceVersion = handle.ResourceVersion
	r.rememberWrite(at)
	return nil
}

// statusMergePatch is the JSON merge patch from one status to another, as
// client.MergeFrom would make it but from the statuses alone: the metadata and
// spec are neither marshalled nor compared on every write.
func statusMergePatch(original, at *tokensv1alpha1.ApiToken) (client.Patch, error) {
	before, err := json.Marshal(original.Status)
	if err != nil {
		return nil, fmt.Errorf("marshal status: %w", err)
	}
	after, err := json.Marshal(at.Status)
	if err != nil {
		return nil, fmt.Errorf("marshal status: %w", err)
	}
	diff, err := objectMergePatch(before, after)
	if err != nil {
		return nil, fmt.Errorf("status patch: %w", err)
	}
	return client.RawPatch(types.MergePatchType, append(append([]byte(`{"status":`), diff...), '}')), nil
}

// cacheLagRetry is how soon a pass that found the cache behind the operator's own
// status write runs again: about one watch delivery.
const cacheLagRetry = 100 * time.Millisecond

// rememberWrite notes the resourceVersion of a status just written.
func (r *ApiTokenReconciler) rememberWrite(written *tokensv1alpha1.ApiToken) {
	if rv, err := strconv.ParseUint(written.ResourceVersion, 10, 64); err == nil {
		r.written.Store(written.UID, rv)
	}
}

// cacheBehindOwnWrite reports whether the cache still holds an ApiToken older than
// the status this process last wrote. The operator's own Secret write enqueues the
// ApiToken again at once; a pass that read the previous status would repeat
// backend calls (replayed, so harmless, but wasted): a create, or the reset of a
// nonce already handled. Such a pass does nothing and comes back a moment later,
// without holding a worker while the watch catches up.
func (r *ApiTokenReconciler) cacheBehindOwnWrite(cached *tokensv1alpha1.ApiToken) bool {
	want, ok := r.written.Load(cached.UID)
	if !ok {
		return false
	}
	got, err := strconv.ParseUint(cached.ResourceVersion, 10, 64)
	if err != nil || got >= want.(uint64) {
		// resourceVersions are opaque; etcd's are numbers, and anything else is
		// taken as caught up
		r.written.CompareAndDelete(cached.UID, want)
		return false
	}
	return true
}
