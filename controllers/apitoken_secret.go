package controllers

import (
	"bytes"
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
// It is computed from the SHA-256 digest of the auth token, not the token itself,
// so that it can be checked against the operator's cache, which holds Secrets'
// data only as digests (secretCacheTransform). The auth token is high-entropy,
// so the hash reveals nothing useful; it is kept only on the Secret, which
// already holds the token itself.
func credentialsHash(sid string, tokenDigest []byte, generation int64) string {
	sum := sha256.Sum256([]byte(sid + "\x00" + hex.EncodeToString(tokenDigest) + "\x00" + strconv.FormatInt(generation, 10)))
	return hex.EncodeToString(sum[:16])
}

// digest is the SHA-256 of a Secret value, the form the cache keeps it in.
func digest(value []byte) []byte {
	sum := sha256.Sum256(value)
	return sum[:]
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
	token := []byte(creds.AuthToken.Reveal())
	annotations[credentialsGenerationAnnotation] = strconv.FormatInt(creds.Generation, 10)
	annotations[credentialsHashAnnotation] = credentialsHash(creds.AccountSID, digest(token), creds.Generation)
	sidKey, tokenKey := secretKeys(at)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: secretName(at), Namespace: at.Namespace, Labels: labels, Annotations: annotations,
		},
		Type: secretType(at),
		Data: map[string][]byte{sidKey: []byte(creds.AccountSID), tokenKey: token},
	}
}

// deliveredCredentials names the credentials a Secret holds (never the token).
type deliveredCredentials struct {
	accountSID string
	generation int64
}

// secretDelivery is what a Secret in digest form says it holds: the digests of
// the SID and the auth token under the keys the spec names, and the generation,
// when they match the hash the operator wrote (intact).
type secretDelivery struct {
	sidDigest, tokenDigest []byte
	generation             int64
	intact                 bool
}

// deliveryIn reads a Secret in digest form (as cached, or as getOwnSecret
// returns it).
func deliveryIn(at *tokensv1alpha1.ApiToken, s *corev1.Secret) secretDelivery {
	if s == nil {
		return secretDelivery{}
	}
	sidKey, tokenKey := secretKeys(at)
	generation, err := strconv.ParseInt(s.Annotations[credentialsGenerationAnnotation], 10, 64)
	if err != nil {
		return secretDelivery{}
	}
	d := secretDelivery{sidDigest: s.Data[sidKey], tokenDigest: s.Data[tokenKey], generation: generation}
	d.intact = len(d.tokenDigest) == sha256.Size && len(d.sidDigest) == sha256.Size && at.Status.AccountSID != "" &&
		s.Annotations[credentialsHashAnnotation] == credentialsHash(at.Status.AccountSID, d.tokenDigest, generation) &&
		bytes.Equal(d.sidDigest, digest([]byte(at.Status.AccountSID)))
	return d
}

// holds reports whether the Secret holds intact credentials of sid.
func (d secretDelivery) holds(sid string) bool {
	return d.intact && bytes.Equal(d.sidDigest, digest([]byte(sid)))
}

// inDigestForm is a Secret as the cache keeps it: its data as SHA-256 digests.
func inDigestForm(s *corev1.Secret) *corev1.Secret {
	out := s.DeepCopy()
	out.Data = digestData(s.Data)
	out.StringData = nil
	return out
}

func digestData(data map[string][]byte) map[string][]byte {
	if data == nil {
		return nil
	}
	out := make(map[string][]byte, len(data))
	for k, v := range data {
		out[k] = digest(v)
	}
	return out
}

// secretCacheTransform is how the cache keeps the Secrets that carry the
// operator's label: a Secret an ApiToken controls with its data as SHA-256
// digests (compared with what the operator would write, never read back), any
// other one (the label alone gives nothing) as bare metadata. The operator then
// holds no credentials at rest, and a tenant's large labelled Secrets cost it
// nothing (docs/security.md).
func secretCacheTransform(in any) (any, error) {
	s, ok := in.(*corev1.Secret)
	if !ok {
		return in, nil
	}
	s.ManagedFields = nil
	s.StringData = nil
	if ref := metav1.GetControllerOf(s); ref == nil || ref.Kind != "ApiToken" || !strings.HasPrefix(ref.APIVersion, tokensv1alpha1.GroupVersion.Group+"/") {
		s.Data, s.Annotations = nil, nil
		return s, nil
	}
	for k, v := range s.Data {
		s.Data[k] = digest(v)
	}
	return s, nil
}

// secretUpToDate reports whether existing (in digest form) already holds what
// desired declares. Labels and annotations added by others are left alone.
func secretUpToDate(existing, desired *corev1.Secret) bool {
	if existing.Type != desired.Type || len(existing.Data) != len(desired.Data) {
		return false
	}
	for k, v := range desired.Data {
		if !bytes.Equal(existing.Data[k], digest(v)) {
			return false
		}
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

// getOwnSecret reads the Secret named name, in digest form. The cache holds
// only Secrets with the operator's label; one without it is looked up through
// the API by its metadata alone (a foreign Secret's data is never read), and read
// in full only when this ApiToken controls it. It returns nil when no Secret has
// the name, and secretConflictError when the ApiToken does not control it.
func (r *ApiTokenReconciler) getOwnSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, name string) (*corev1.Secret, error) {
	if s, err := r.cachedSecret(ctx, at, name); s != nil || err != nil {
		return s, err
	}
	key := types.NamespacedName{Namespace: at.Namespace, Name: name}
	head := &metav1.PartialObjectMetadata{}
	head.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.APIReader.Get(ctx, key, head); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get Secret %s: %w", name, err)
	}
	if !isControlledBy(head, at) {
		return nil, secretConflictError{name: name}
	}
	s, err := readSecret(ctx, r.APIReader, at, name)
	if s == nil || err != nil {
		return s, err
	}
	return inDigestForm(s), nil
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
// conflicting ApiToken leaves nothing behind in the backend. An adopted token
// existed before this ApiToken and is never deleted here unless the TokenBackend
// allows deletionPolicy Delete. It returns only the failure of that delete;
// secretErr stays the caller's to report.
func (r *ApiTokenReconciler) discardUnusedToken(ctx context.Context, at *tokensv1alpha1.ApiToken, be backend.Backend, tb *tokensv1alpha1.TokenBackend, secretErr error) error {
	sid := at.Status.AccountSID
	if !secretCannotBeWritten(secretErr) || sid == "" || at.Status.SecretName != "" {
		return nil
	}
	if wasAdopted(at, sid) && !deletionAllowed(tb.Spec.Policy, tokensv1alpha1.DeletionPolicyDelete) {
		return nil
	}
	if _, err := r.confirmOwned(ctx, at, be, sid); err != nil {
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
	r.readAtNextPass(at)
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
// says which they are. creds are the credentials just returned by a create, reset
// or rotation (nil otherwise); observed is the backend token when it was read in
// this pass (nil when unchanged). Credentials older than those already delivered
// (a replayed reply whose auth token a later reset revoked) are never written.
// When the Secret already holds the current credentials as the spec wants them,
// nothing is read or written; otherwise they come from the backend, from a token
// confirmed as the ApiToken's.
func (r *ApiTokenReconciler) reconcileSecret(ctx context.Context, at *tokensv1alpha1.ApiToken, be backend.Backend, lookup secretLookup, creds *backend.Credentials, observed *backend.Token) (deliveredCredentials, error) {
	name := secretName(at)
	existing := lookup.existing
	if !lookup.done {
		var err error
		if existing, err = r.cachedSecret(ctx, at, name); err != nil {
			return deliveredCredentials{}, err
		}
	}
	current := deliveryIn(at, existing)
	if creds != nil && staleCredentials(*creds, current.generation, current.holds(creds.AccountSID), at.Status.History) {
		logf.FromContext(ctx).Info("ignored credentials older than those delivered; reading the current ones", "sid", creds.AccountSID, "generation", creds.Generation)
		creds, observed = nil, nil
	}
	sid := at.Status.AccountSID
	if creds == nil && current.holds(sid) && (observed == nil || observed.Generation == current.generation) &&
		current.generation >= latestGeneration(at.Status.History, sid) && existing.Type == secretType(at) &&
		secretMetadataUpToDate(existing, at, sid, current) && (at.Status.SecretName == name || at.Status.SecretName == "") {
		at.Status.SecretName = name
		return deliveredCredentials{accountSID: sid, generation: current.generation}, nil
	}
	if creds == nil {
		fetched, err := r.ownCredentials(ctx, at, be)
		if err != nil {
			return deliveredCredentials{}, err
		}
		creds = &fetched
	}
	desired := renderSecret(at, *creds)
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
	at.Status.SecretName = name
	return deliveredCredentials{accountSID: creds.AccountSID, generation: creds.Generation}, nil
}

// ownCredentials reads the credentials of the status's token once it is
// confirmed as the ApiToken's. A foreign one is never read: the status is
// rebuilt from the lookup by externalId, and the credentials are those of the
// ApiToken's own current token (or, when it has none, the pass fails and the next
// one makes it).
func (r *ApiTokenReconciler) ownCredentials(ctx context.Context, at *tokensv1alpha1.ApiToken, be backend.Backend) (backend.Credentials, error) {
	sid := at.Status.AccountSID
	_, err := r.confirmOwned(ctx, at, be, sid)
	if isForeign(err) {
		has, rebuildErr := r.rebuildFromOwnTokens(ctx, at, be, sid)
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

// secretMetadataUpToDate reports whether a Secret that holds the current
// credentials also carries the labels, annotations and owner the spec wants, so
// that it needs no write (which would need the auth token).
func secretMetadataUpToDate(existing *corev1.Secret, at *tokensv1alpha1.ApiToken, sid string, d secretDelivery) bool {
	desired := renderSecret(at, backend.Credentials{AccountSID: sid, Generation: d.generation})
	desired.Annotations[credentialsHashAnnotation] = credentialsHash(sid, d.tokenDigest, d.generation)
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
	return len(existing.Data) == 2
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
