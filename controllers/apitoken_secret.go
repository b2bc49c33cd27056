package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
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

// secretOf is the Secret named name that the spec asks for, holding the
// credentials of sid at generation in layout l, without its data: what the
// metadata must say (labels, annotations, type, the data keys with empty
// values). The owner reference is set by the caller, which knows the scheme.
func secretOf(at *tokensv1alpha1.ApiToken, name string, l secretLayout, sid string, generation int64) *corev1.Secret {
	labels := map[string]string{}
	if l.secretType != sourceSecretType { // a replication label must not copy the raw token anywhere
		for k, v := range at.Spec.Secret.Labels {
			labels[k] = string(v)
		}
	}
	labels[tokensv1alpha1.ManagedByLabel] = tokensv1alpha1.ManagedByValue
	labels[tokensv1alpha1.ApiTokenLabel] = at.Name
	switch l.secretType {
	case sourceSecretType:
		labels[tokensv1alpha1.InternalSecretLabel] = "source"
	case pendingSecretType:
		labels[tokensv1alpha1.InternalSecretLabel] = "pending"
	}
	annotations := map[string]string{}
	if l.secretType != sourceSecretType {
		maps.Copy(annotations, at.Spec.Secret.Annotations)
	}
	annotations[credentialsGenerationAnnotation] = strconv.FormatInt(generation, 10)
	annotations[credentialsHashAnnotation] = credentialsHash(sid, generation, l)
	data := map[string][]byte{}
	for _, k := range l.keys {
		data[k] = nil
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: at.Namespace, Labels: labels, Annotations: annotations},
		Type:       l.secretType,
		Data:       data,
	}
}

// renderSecret is the Secret that the spec and the credentials call for.
func renderSecret(at *tokensv1alpha1.ApiToken, l secretLayout, creds backend.Credentials) (*corev1.Secret, error) {
	s := secretOf(at, secretName(at), l, creds.AccountSID, creds.Generation)
	data, err := l.secretData(creds)
	s.Data = data
	return s, err
}

// deliveredCredentials names the credentials a Secret holds (never the token).
type deliveredCredentials struct {
	accountSID string
	generation int64
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

// getOwnSecret reads the metadata of the Secret named name: from the cache,
// which holds the operator's labelled Secrets, or else through the API (a Secret
// without the label: its metadata alone, so a foreign Secret's data is never
// read). It returns nil when no Secret has the name, and secretConflictError
// when the ApiToken does not control it.
func (r *ApiTokenReconciler) getOwnSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, name string) (*metav1.PartialObjectMetadata, error) {
	if s, err := r.cachedSecret(ctx, at, name); s != nil || err != nil {
		return s, err
	}
	return readSecret(ctx, r.APIReader, at, name)
}

// cachedSecret reads the Secret named name from the cache, which holds only the
// operator's Secrets: nil means that no Secret of the operator has the name, and a
// foreign one, if any, is found when creating it.
func (r *ApiTokenReconciler) cachedSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, name string) (*metav1.PartialObjectMetadata, error) {
	s, err := readSecret(ctx, r.Client, at, name)
	if s != nil {
		uncompactSecret(s)
	}
	return s, err
}

// readSecret reads the metadata of the Secret named name in the ApiToken's
// namespace: nil when there is none, secretConflictError when the ApiToken does
// not control it.
func readSecret(ctx context.Context, reader client.Reader, at *tokensv1alpha1.ApiToken, name string) (*metav1.PartialObjectMetadata, error) {
	s := secretHead()
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
	existing *metav1.PartialObjectMetadata
}

// checkSecretAvailable stops an ApiToken whose Secret name was taken in an earlier
// pass (a SecretConflict stall, or an error before its Secret was written) before
// anything is created in the backend again. A fresh ApiToken is not checked here:
// its Secret create finds a foreign Secret, and discardUnusedToken then deletes the
// token created for it, which saves an uncached read per new token.
func (r *ApiTokenReconciler) checkSecretAvailable(ctx context.Context, p *pass) error {
	at := p.at
	if at.Status.AccountSID != "" || !mayHaveCreated(at, r.Clock.Now()) {
		return nil
	}
	// A Secret the API server refused stays refused until the spec changes: no
	// token is made again for it.
	if c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue &&
		c.Reason == tokensv1alpha1.ReasonSecretRejected && at.Status.ObservedGeneration == at.Generation {
		return &stalledError{reason: c.Reason, message: c.Message}
	}
	existing, err := r.getOwnSecret(ctx, at, secretName(at))
	p.lookup = secretLookup{done: err == nil, existing: existing}
	return err
}

// discardUnusedToken deletes the backend token when its Secret cannot be written
// (secretErr) because the name is taken and no Secret has ever held the token: a
// conflicting ApiToken leaves nothing behind in the backend. An adopted token
// existed before this ApiToken and is never deleted here unless the TokenBackend
// allows deletionPolicy Delete. It returns only the failure of that delete;
// secretErr stays the caller's to report.
func (r *ApiTokenReconciler) discardUnusedToken(ctx context.Context, p *pass, secretErr error) error {
	at, be, tb := p.at, p.be, p.tb
	sid := at.Status.AccountSID
	if !secretCannotBeWritten(secretErr) || sid == "" || at.Status.SecretName != "" {
		return nil
	}
	if wasAdopted(at, sid) && !deletionAllowed(tb.Spec.Policy, tokensv1alpha1.DeletionPolicyDelete) {
		return nil
	}
	if err := r.confirmOwned(ctx, p, sid); err != nil {
		if isForeign(err) || errors.Is(err, backend.ErrNotFound) {
			return nil // not this ApiToken's, or gone: nothing to discard
		}
		return err
	}
	if err := be.Delete(ctx, sid); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("delete token %s, whose Secret name is taken: %w", sid, err)
	}
	r.owned.remove(at.UID, sid)
	r.event(at, corev1.EventTypeNormal, "Deleted", "Deleted token %s again: Secret %q is not this ApiToken's", sid, secretName(at))
	at.Status.AccountSID, at.Status.BackendETag, at.Status.APIVersion, at.Status.State = "", "", 0, ""
	at.Status.History = slices.DeleteFunc(at.Status.History, func(c tokensv1alpha1.CredentialChange) bool { return c.AccountSID == sid })
	at.Status.CredentialsIssuedAt, at.Status.NextRotationTime = nil, nil
	p.reads.readAtNextPass()
	return nil
}

// wasAdopted reports whether sid is a token the ApiToken adopted (spec.adopt
// names it, or the history records its adoption).
func wasAdopted(at *tokensv1alpha1.ApiToken, sid string) bool {
	if at.Spec.Adopt != nil && at.Spec.Adopt.AccountSID == sid {
		return true
	}
	return slices.ContainsFunc(at.Status.History, func(c tokensv1alpha1.CredentialChange) bool {
		return c.Type == tokensv1alpha1.CredentialsAdopted && c.AccountSID == sid
	})
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
// records which they are in p.delivered. The pass's creds are the credentials
// just returned by a create, reset or rotation (nil otherwise); its observed is
// the backend token when it was read in this pass (nil when unchanged). Credentials older than those already delivered
// (a replayed reply whose auth token a later reset revoked) are never written.
// When the Secret already holds the current credentials as the spec wants them,
// nothing is read or written; otherwise they come from the backend, from a token
// confirmed as the ApiToken's.
func (r *ApiTokenReconciler) reconcileSecret(ctx context.Context, p *pass) error {
	delivered, err := r.deliverCredentials(ctx, p)
	p.delivered = delivered
	return err
}

func (r *ApiTokenReconciler) deliverCredentials(ctx context.Context, p *pass) (deliveredCredentials, error) {
	at, lookup, creds, observed := p.at, p.lookup, p.creds, p.observed
	name, layout := secretName(at), p.layout()
	existing := lookup.existing
	if !lookup.done {
		var err error
		if existing, err = r.cachedSecret(ctx, at, name); err != nil {
			return deliveredCredentials{}, err
		}
	}
	current := deliveryIn(existing)
	if creds != nil && staleCredentials(*creds, current.generation, current.holds(layout, creds.AccountSID), at.Status.History) {
		logf.FromContext(ctx).Info("ignored credentials older than those delivered; reading the current ones", "sid", creds.AccountSID, "generation", creds.Generation)
		creds, observed = nil, nil
	}
	sid := at.Status.AccountSID
	if creds == nil && current.holds(layout, sid) && (observed == nil || observed.Generation == current.generation) &&
		current.generation >= latestGeneration(at.Status.History, sid) &&
		secretUpToDate(existing, secretOf(at, name, layout, sid, current.generation)) &&
		(at.Status.SecretName == name || at.Status.SecretName == "") {
		at.Status.SecretName, at.Status.SecretDigest = name, layout.digest
		return deliveredCredentials{accountSID: sid, generation: current.generation}, nil
	}
	if creds == nil {
		fetched, err := r.currentCredentials(ctx, p, layout)
		if err != nil {
			return deliveredCredentials{}, err
		}
		creds = &fetched
	}
	// First: new credentials outlive a template that fails below, and the
	// operator keeps the only copy of a secret the backend never returns.
	if keepsSource(p, layout) {
		if err := r.writeSource(ctx, at, *creds, p.writtenAheadFor(*creds)); err != nil {
			return deliveredCredentials{}, err
		}
	}
	desired, err := renderSecret(at, layout, *creds)
	if err != nil {
		return deliveredCredentials{}, err
	}
	if err := controllerutil.SetControllerReference(at, desired, r.Scheme); err != nil {
		return deliveredCredentials{}, fmt.Errorf("own Secret %s: %w", name, err)
	}
	if err := r.writeSecret(ctx, at, existing, desired); err != nil {
		return deliveredCredentials{}, err
	}
	if old := at.Status.SecretName; old != "" && old != name {
		if err := r.deleteOwnSecret(ctx, at, old); err != nil {
			return deliveredCredentials{}, err
		}
		r.event(at, corev1.EventTypeNormal, "SecretMoved", "Moved the credentials from Secret %s to %s", old, name)
	}
	if err := r.settlePending(ctx, p); err != nil {
		return deliveredCredentials{}, err
	}
	if !keepsSource(p, layout) && at.Status.SecretDigest != "" {
		// The template is gone: so is the need for its source Secret.
		if err := r.deleteOwnSecret(ctx, at, sourceSecretName(at)); err != nil {
			return deliveredCredentials{}, err
		}
	}
	at.Status.SecretName, at.Status.SecretDigest = name, layout.digest
	return deliveredCredentials{accountSID: creds.AccountSID, generation: creds.Generation}, nil
}

// keepsSource reports whether the ApiToken's credentials are kept in its source
// Secret: for a layout rendered from templates, and always for a backend that
// never returns a secret (the source is then the operator's only copy).
func keepsSource(p *pass, layout secretLayout) bool {
	return layout.rendered() || (p.be != nil && !p.caps.RetrievableSecrets)
}

// currentCredentials are the credentials of the status's token for a Secret
// that must be written again without new ones: from the source Secret when the
// layout is rendered and it holds them (a change of template costs no backend
// call), else from the backend. The source Secret is trusted as far as its
// data was written by the operator alone (managedFields) for this ApiToken's
// current token and generation.
func (r *ApiTokenReconciler) currentCredentials(ctx context.Context, p *pass, layout secretLayout) (backend.Credentials, error) {
	at := p.at
	if keepsSource(p, layout) || at.Status.SecretDigest != "" { // a template just removed still has its source
		generation := latestGeneration(at.Status.History, at.Status.AccountSID)
		creds, ok, err := r.sourceCredentials(ctx, at, at.Status.AccountSID, generation)
		if err != nil || ok {
			return creds, err
		}
	}
	return r.ownCredentials(ctx, p)
}

// ownCredentials reads the credentials of the status's token once it is
// confirmed as the ApiToken's. A foreign one is never read: the status is
// rebuilt from the lookup by externalId, and the credentials are those of the
// ApiToken's own current token (or, when it has none, the pass fails and the next
// one makes it).
func (r *ApiTokenReconciler) ownCredentials(ctx context.Context, p *pass) (backend.Credentials, error) {
	at, be := p.at, p.be
	sid := at.Status.AccountSID
	err := r.confirmOwned(ctx, p, sid)
	if isForeign(err) {
		has, rebuildErr := r.rebuildFromOwnTokens(ctx, p, sid)
		if rebuildErr != nil {
			return backend.Credentials{}, rebuildErr
		}
		if !has {
			return backend.Credentials{}, fmt.Errorf("token %s is not this ApiToken's, and it has none: the next pass makes one", sid)
		}
		sid, err = at.Status.AccountSID, nil
	}
	if err != nil {
		return backend.Credentials{}, err
	}
	creds, err := be.Credentials(ctx, sid)
	if err != nil {
		return backend.Credentials{}, fmt.Errorf("read credentials of %s: %w", sid, err)
	}
	return creds, nil
}

// writeSecret creates or updates the Secret (existing is its metadata, nil when
// there is none), or replaces it when its type must change (the API server
// forbids that in place); it writes nothing when it is up to date. A create that
// finds the name taken reads the Secret's metadata through the API: it is the
// ApiToken's own when the cache lags behind an earlier write, and a conflict
// otherwise.
func (r *ApiTokenReconciler) writeSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, existing *metav1.PartialObjectMetadata, desired *corev1.Secret) error {
	if existing != nil && secretUpToDate(existing, desired) {
		return nil
	}
	if existing == nil {
		err := r.SecretWriter.Create(ctx, desired)
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
	updated := &corev1.Secret{ObjectMeta: *existing.ObjectMeta.DeepCopy(), Type: desired.Type, Data: desired.Data}
	updated.ManagedFields = nil // an update without them keeps the API server's
	updated.OwnerReferences = desired.OwnerReferences
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Labels, desired.Labels)
	maps.Copy(updated.Annotations, desired.Annotations)
	err := r.SecretWriter.Update(ctx, updated)
	if typeChanged(err) {
		// The type is immutable: replace the Secret (its consumers see it
		// vanish for a moment, which a change of type implies anyway).
		if err := r.Delete(ctx, existing, client.Preconditions{UID: &existing.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("replace Secret %s: %w", existing.Name, err)
		}
		return r.writeSecret(ctx, at, nil, desired)
	}
	if apierrors.IsInvalid(err) {
		return secretRejected(desired.Name, err)
	}
	if err != nil {
		return fmt.Errorf("update Secret %s: %w", desired.Name, err)
	}
	return nil
}

// typeChanged reports the API server's refusal to change a Secret's type.
func typeChanged(err error) bool {
	status, ok := err.(apierrors.APIStatus)
	if !ok || !apierrors.IsInvalid(err) || status.Status().Details == nil {
		return false
	}
	return slices.ContainsFunc(status.Status().Details.Causes, func(c metav1.StatusCause) bool { return c.Field == "type" })
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
// neither is garbage-collected with the ApiToken. The source Secret of a
// rendered layout is deleted: it is of no use without the ApiToken.
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
	return r.deleteSource(ctx, at)
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
