package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Annotations the operator keeps on the Secret to know, without asking the backend,
// that the credentials in it are current and unedited.
const (
	credentialsGenerationAnnotation = "tokens.apitoken.dev/credentials-generation"
	credentialsHashAnnotation       = "tokens.apitoken.dev/credentials-hash"
)

// secretName is where the spec wants the credentials.
func secretName(at *tokensv1alpha1.ApiToken) string {
	if at.Spec.Secret.Name != "" {
		return at.Spec.Secret.Name
	}
	return at.Name
}

func secretType(at *tokensv1alpha1.ApiToken) corev1.SecretType {
	if at.Spec.Secret.Type == "" {
		return corev1.SecretTypeOpaque
	}
	return at.Spec.Secret.Type
}

// secretKeys are the data keys of the SID and the auth token.
func secretKeys(at *tokensv1alpha1.ApiToken) (sidKey, tokenKey string) {
	if secretType(at) == corev1.SecretTypeBasicAuth {
		return corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey
	}
	sidKey, tokenKey = at.Spec.Secret.AccountSIDKey, at.Spec.Secret.AuthTokenKey
	if sidKey == "" {
		sidKey = "accountSid"
	}
	if tokenKey == "" {
		tokenKey = "authToken"
	}
	return sidKey, tokenKey
}

// credentialsHash fingerprints credentials so that an edited Secret is noticed.
// The auth token is high-entropy, so its hash reveals nothing useful; it is kept
// only on the Secret, which already holds the token itself.
func credentialsHash(creds backend.Credentials) string {
	sum := sha256.Sum256([]byte(creds.AccountSID + "\x00" + creds.AuthToken.Reveal() + "\x00" + strconv.FormatInt(creds.Generation, 10)))
	return hex.EncodeToString(sum[:16])
}

// renderSecret is the Secret that the spec and the credentials call for. The owner
// reference is set by the caller, which knows the scheme.
func renderSecret(at *tokensv1alpha1.ApiToken, creds backend.Credentials) *corev1.Secret {
	labels := map[string]string{}
	for k, v := range at.Spec.Secret.Labels {
		labels[k] = string(v)
	}
	labels[tokensv1alpha1.ManagedByLabel] = tokensv1alpha1.ManagedByValue
	labels[tokensv1alpha1.ApiTokenLabel] = at.Name
	annotations := map[string]string{}
	maps.Copy(annotations, at.Spec.Secret.Annotations)
	annotations[credentialsGenerationAnnotation] = strconv.FormatInt(creds.Generation, 10)
	annotations[credentialsHashAnnotation] = credentialsHash(creds)
	sidKey, tokenKey := secretKeys(at)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: secretName(at), Namespace: at.Namespace, Labels: labels, Annotations: annotations,
		},
		Type: secretType(at),
		Data: map[string][]byte{sidKey: []byte(creds.AccountSID), tokenKey: []byte(creds.AuthToken.Reveal())},
	}
}

// credentialsInSecret returns the credentials a Secret holds when they are intact:
// in the keys the spec names and matching the hash the operator wrote.
func credentialsInSecret(at *tokensv1alpha1.ApiToken, s *corev1.Secret) (backend.Credentials, bool) {
	if s == nil {
		return backend.Credentials{}, false
	}
	sidKey, tokenKey := secretKeys(at)
	generation, err := strconv.ParseInt(s.Annotations[credentialsGenerationAnnotation], 10, 64)
	if err != nil {
		return backend.Credentials{}, false
	}
	creds := backend.Credentials{
		AccountSID: string(s.Data[sidKey]),
		AuthToken:  backend.AuthToken(s.Data[tokenKey]),
		Generation: generation,
	}
	if creds.AccountSID == "" || creds.AuthToken == "" || s.Annotations[credentialsHashAnnotation] != credentialsHash(creds) {
		return backend.Credentials{}, false
	}
	return creds, true
}

// secretUpToDate reports whether existing already holds what desired declares.
// Labels and annotations added by others are left alone.
func secretUpToDate(existing, desired *corev1.Secret) bool {
	if existing.Type != desired.Type || !apiequality.Semantic.DeepEqual(existing.Data, desired.Data) {
		return false
	}
	for k, v := range desired.Labels {
		if existing.Labels[k] != v {
			return false
		}
	}
	for k, v := range desired.Annotations {
		if existing.Annotations[k] != v {
			return false
		}
	}
	return true
}

// isControlledBy reports whether obj's controller reference is the ApiToken.
func isControlledBy(obj metav1.Object, at *tokensv1alpha1.ApiToken) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == at.UID
}

// secretConflictError is a Secret of the wanted name that this ApiToken does not control.
type secretConflictError struct{ name string }

func (e secretConflictError) Error() string {
	return fmt.Sprintf("Secret %q exists and is not controlled by this ApiToken; choose another spec.secret.name or delete that Secret", e.name)
}

// getOwnSecret reads the Secret named name. The cache holds only the operator's
// Secrets; a foreign Secret of that name is found through the API reader and
// reported as a conflict. It returns nil when no Secret has the name.
func (r *ApiTokenReconciler) getOwnSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, name string) (*corev1.Secret, error) {
	if s, err := r.cachedSecret(ctx, at, name); s != nil || err != nil {
		return s, err
	}
	return readSecret(ctx, r.APIReader, at, name)
}

// cachedSecret reads the Secret named name from the cache, which holds only the
// operator's Secrets: nil means that no Secret of the operator has the name, and a
// foreign one, if any, is found when creating it.
func (r *ApiTokenReconciler) cachedSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, name string) (*corev1.Secret, error) {
	return readSecret(ctx, r.Client, at, name)
}

// readSecret reads the Secret named name in the ApiToken's namespace: nil when
// there is none, secretConflictError when the ApiToken does not control it.
func readSecret(ctx context.Context, reader client.Reader, at *tokensv1alpha1.ApiToken, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := reader.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: name}, s)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get Secret %s: %w", name, err)
	case !isControlledBy(s, at):
		return nil, secretConflictError{name: name}
	}
	return s, nil
}

// secretLookup is the Secret found under the wanted name before the backend
// phase, when it was looked up then (so that the Secret phase need not read it
// again).
type secretLookup struct {
	done     bool
	existing *corev1.Secret
}

// checkSecretAvailable stops an ApiToken whose Secret name was taken in an earlier
// pass (a SecretConflict stall, or an error before its Secret was written) before
// anything is created in the backend again. A fresh ApiToken is not checked here:
// its Secret create finds a foreign Secret, and discardUnusedToken then deletes the
// token created for it, which saves an uncached read per new token.
func (r *ApiTokenReconciler) checkSecretAvailable(ctx context.Context, at *tokensv1alpha1.ApiToken) (secretLookup, error) {
	if at.Status.AccountSID != "" || !mayHaveCreated(at, r.Clock.Now()) {
		return secretLookup{}, nil
	}
	// A Secret the API server refused stays refused until the spec changes: no
	// token is made again for it.
	if c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue &&
		c.Reason == tokensv1alpha1.ReasonSecretRejected && at.Status.ObservedGeneration == at.Generation {
		return secretLookup{}, &stalledError{reason: c.Reason, message: c.Message}
	}
	existing, err := r.getOwnSecret(ctx, at, secretName(at))
	return secretLookup{done: err == nil, existing: existing}, err
}

// discardUnusedToken deletes the backend token when its Secret cannot be written
// (secretErr) because the name is taken and no Secret has ever held the token: a
// conflicting ApiToken leaves nothing behind in the backend. It returns only the
// failure of that delete; secretErr stays the caller's to report.
func (r *ApiTokenReconciler) discardUnusedToken(ctx context.Context, at *tokensv1alpha1.ApiToken, be backend.Backend, secretErr error) error {
	if !secretCannotBeWritten(secretErr) || at.Status.AccountSID == "" || at.Status.SecretName != "" || at.Spec.Adopt != nil {
		return nil // an adopted token existed before this ApiToken: never deleted here
	}
	sid := at.Status.AccountSID
	if err := be.Delete(ctx, sid); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("delete token %s, whose Secret name is taken: %w", sid, err)
	}
	r.event(at, corev1.EventTypeNormal, "Deleted", "Deleted token %s again: Secret %q is not this ApiToken's", sid, secretName(at))
	at.Status.AccountSID, at.Status.BackendETag, at.Status.APIVersion, at.Status.State = "", "", 0, ""
	at.Status.History = slices.DeleteFunc(at.Status.History, func(c tokensv1alpha1.CredentialChange) bool { return c.AccountSID == sid })
	at.Status.CredentialsIssuedAt, at.Status.NextRotationTime = nil, nil
	r.readAtNextPass(at)
	return nil
}

// secretCannotBeWritten reports a Secret failure that no retry cures: a foreign
// Secret holds the name, or the API server refuses the Secret as invalid.
func secretCannotBeWritten(err error) bool {
	var stall *stalledError
	return errors.As(err, new(secretConflictError)) || (errors.As(err, &stall) && stall.reason == tokensv1alpha1.ReasonSecretRejected)
}

// secretRejected turns the API server's refusal of an invalid Secret into a
// stall whose message names the refused fields (from the spec, so it is stable).
func secretRejected(name string, err error) error {
	var fields []string
	if status, ok := err.(apierrors.APIStatus); ok && status.Status().Details != nil {
		for _, c := range status.Status().Details.Causes {
			fields = append(fields, c.Field)
		}
	}
	slices.Sort(fields)
	return stalled(tokensv1alpha1.ReasonSecretRejected, "The API server refused Secret %s as invalid (%s); change spec.secret", name, strings.Join(slices.Compact(fields), ", "))
}

// reconcileSecret makes the Secret hold the token's current credentials and
// returns them. creds are the credentials just returned by a create, reset or
// rotation (nil otherwise); observed is the backend token when it was read in
// this pass (nil when unchanged). Credentials older than those already delivered
// (a replayed reply whose auth token a later reset revoked) are never written.
func (r *ApiTokenReconciler) reconcileSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, be backend.Backend, lookup secretLookup, creds *backend.Credentials, observed *backend.Token) (backend.Credentials, error) {
	name := secretName(at)
	existing := lookup.existing
	if !lookup.done {
		var err error
		if existing, err = r.cachedSecret(ctx, at, name); err != nil {
			return backend.Credentials{}, err
		}
	}
	current, haveCurrent := credentialsInSecret(at, existing)
	if creds != nil && staleCredentials(*creds, current, haveCurrent, at.Status.History) {
		logf.FromContext(ctx).Info("ignored credentials older than those delivered; reading the current ones", "sid", creds.AccountSID, "generation", creds.Generation)
		creds, observed = nil, nil
	}
	if creds == nil {
		if haveCurrent && current.AccountSID == at.Status.AccountSID && (observed == nil || observed.Generation == current.Generation) {
			creds = &current
		} else {
			fetched, err := be.Credentials(ctx, at.Status.AccountSID)
			if err != nil {
				return backend.Credentials{}, fmt.Errorf("read credentials of %s: %w", at.Status.AccountSID, err)
			}
			creds = &fetched
		}
	}
	desired := renderSecret(at, *creds)
	if err := controllerutil.SetControllerReference(at, desired, r.Scheme); err != nil {
		return backend.Credentials{}, fmt.Errorf("own Secret %s: %w", name, err)
	}
	if err := r.writeSecret(ctx, at, existing, desired); err != nil {
		return backend.Credentials{}, err
	}
	if old := at.Status.SecretName; old != "" && old != name {
		if err := r.deleteOwnSecret(ctx, at, old); err != nil {
			return backend.Credentials{}, err
		}
		r.event(at, corev1.EventTypeNormal, "SecretMoved", "Moved the credentials from Secret %s to %s", old, name)
	}
	at.Status.SecretName = name
	return *creds, nil
}

// writeSecret creates, updates or (when its type must change, which the API server
// forbids in place) replaces the Secret; it writes nothing when it is up to date.
// A create that finds the name taken reads the Secret through the API: it is the
// ApiToken's own when the cache lags behind an earlier write, and a conflict
// otherwise.
func (r *ApiTokenReconciler) writeSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, existing, desired *corev1.Secret) error {
	if existing != nil && secretUpToDate(existing, desired) {
		return nil
	}
	if existing != nil && existing.Type != desired.Type {
		if err := r.Delete(ctx, existing, client.Preconditions{UID: &existing.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("replace Secret %s: %w", existing.Name, err)
		}
		existing = nil
	}
	if existing == nil {
		err := r.Create(ctx, desired)
		if apierrors.IsInvalid(err) {
			return secretRejected(desired.Name, err)
		}
		if !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("create Secret %s: %w", desired.Name, err)
			}
			return nil
		}
		if existing, err = r.getOwnSecret(ctx, at, desired.Name); err != nil {
			return err
		}
		if existing == nil {
			return fmt.Errorf("create Secret %s: deleted while being created; retrying", desired.Name)
		}
		return r.writeSecret(ctx, at, existing, desired)
	}
	updated := existing.DeepCopy()
	updated.Type = desired.Type
	updated.Data = desired.Data
	updated.OwnerReferences = desired.OwnerReferences
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Labels, desired.Labels)
	maps.Copy(updated.Annotations, desired.Annotations)
	if err := r.Update(ctx, updated); err != nil {
		if apierrors.IsInvalid(err) {
			return secretRejected(desired.Name, err)
		}
		return fmt.Errorf("update Secret %s: %w", desired.Name, err)
	}
	return nil
}

// deleteOwnSecret deletes the named Secret if this ApiToken controls it.
func (r *ApiTokenReconciler) deleteOwnSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, name string) error {
	s, err := r.getOwnSecret(ctx, at, name)
	if s == nil || err != nil {
		if errors.As(err, new(secretConflictError)) {
			return nil // not ours: leave it alone
		}
		return err
	}
	if err := r.Delete(ctx, s, client.Preconditions{UID: &s.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete Secret %s: %w", name, err)
	}
	return nil
}

// orphanSecrets removes the ApiToken's owner reference from its Secret, and from
// the one its status names when a rename has not been carried out yet, so that
// neither is garbage-collected with the ApiToken.
func (r *ApiTokenReconciler) orphanSecrets(ctx context.Context, at *tokensv1alpha1.ApiToken) error {
	names := []string{secretName(at)}
	if old := at.Status.SecretName; old != "" && old != names[0] {
		names = append(names, old)
	}
	for _, name := range names {
		if err := r.orphanSecret(ctx, at, name); err != nil {
			return err
		}
	}
	return nil
}

// orphanSecret removes the ApiToken's owner reference from the named Secret if
// the ApiToken controls it.
func (r *ApiTokenReconciler) orphanSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, name string) error {
	s, err := r.getOwnSecret(ctx, at, name)
	if s == nil || err != nil {
		if errors.As(err, new(secretConflictError)) {
			return nil
		}
		return err
	}
	patch := client.MergeFromWithOptions(s.DeepCopy(), client.MergeFromWithOptimisticLock{})
	s.OwnerReferences = slices.DeleteFunc(s.OwnerReferences, func(ref metav1.OwnerReference) bool { return ref.UID == at.UID })
	if err := r.Patch(ctx, s, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("orphan Secret %s: %w", s.Name, err)
	}
	return nil
}
