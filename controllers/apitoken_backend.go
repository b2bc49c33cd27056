package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// replayWindow is how long a create is safely repeated by its idempotency key
// alone: half the Token Service's 24 h retention. An older ApiToken that has no
// token recorded is looked up by external id before any create.
const replayWindow = 12 * time.Hour

// reconcileBackendToken makes the backend token match the spec and carries out a
// due reset or rotation. It sets the pass's credentials when a create, reset or
// rotation produced them, and its observed token when it was read or made in
// this pass; both stay nil when the token was not due a backend check.
func (r *ApiTokenReconciler) reconcileBackendToken(ctx context.Context, p *pass) error {
	recovered := p.creds // a secret written ahead that a crash left undelivered
	creds, observed, err := r.syncBackendToken(ctx, p)
	p.creds, p.observed = cmp.Or(creds, recovered), observed
	return err
}

func (r *ApiTokenReconciler) syncBackendToken(ctx context.Context, p *pass) (*backend.Credentials, *backend.Token, error) {
	at, resync := p.at, p.resync
	desired := desiredToken(at)
	if at.Status.AccountSID == "" {
		if at.Spec.Adopt != nil && !hasOwnedToken(at) {
			return r.adoptExisting(ctx, p, desired)
		}
		return r.findOrCreate(ctx, p, desired, "")
	}
	now := r.Clock.Now()
	change, changeDue := dueCredentialChange(at, now)
	var observed *backend.Token
	if backendReadDue(at, p.reads.lastRead(resync), now, resync, p.reads.specConfirmed(p.specDigest())) {
		var lost bool
		var err error
		if observed, lost, err = r.readBackendToken(ctx, p, desired); err != nil || lost {
			return r.recreateIfLost(ctx, p, desired, lost, err)
		}
		if at.Status.AccountSID == "" { // the status named a foreign token, and the ApiToken has none
			return r.findOrCreate(ctx, p, desired, "")
		}
	}
	if !changeDue {
		return nil, observed, nil
	}
	// A reset or rotation does not need the token read first (a token that
	// vanished answers 404, and is then made again) once this process has
	// confirmed that the token is the ApiToken's.
	creds, tok, err := r.changeCredentials(ctx, p, desired, change)
	if foreign, ok := errors.AsType[foreignTokenError](err); ok {
		has, rebuildErr := r.rebuildFromOwnTokens(ctx, p, foreign.sid)
		switch {
		case rebuildErr != nil:
			return nil, nil, rebuildErr
		case !has:
			return r.findOrCreate(ctx, p, desired, "")
		}
		creds, tok, err = r.changeCredentials(ctx, p, desired, change)
	}
	if errors.Is(err, backend.ErrNotFound) {
		return r.recreateIfLost(ctx, p, desired, true, nil)
	}
	return creds, tok, err
}

// readBackendToken reads the current token (conditionally on the version last
// seen, once this process has confirmed that it is the ApiToken's) and patches
// it back to the spec when it changed. lost reports a token that is gone. A
// token of another owner is never used: the status is rebuilt from a lookup by
// externalId, and observed is then that token, or nil with an empty status SID.
func (r *ApiTokenReconciler) readBackendToken(ctx context.Context, p *pass, desired backend.CreateRequest) (observed *backend.Token, lost bool, err error) {
	at, be := p.at, p.be
	sid := at.Status.AccountSID
	etag := at.Status.BackendETag
	if specUnconfirmed(at) || !r.owned.confirmed(at.UID, sid) {
		// The last version seen was checked against another spec, or the ETag is
		// the status's word alone: a 304 against it would confirm nothing.
		etag = ""
	}
	observed, modified, err := be.Get(ctx, sid, etag)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read token %s: %w", sid, err)
	}
	if observed != nil && r.checkOwner(at, observed) != nil {
		_, err := r.rebuildFromOwnTokens(ctx, p, sid)
		return nil, false, err
	}
	p.reads.read()
	if modified {
		if observed, err = r.updateToken(ctx, p, desired, observed); err != nil {
			return nil, false, err
		}
	}
	return observed, false, nil
}

// recreateIfLost finds or makes the ApiToken's own token when the one in its
// status is gone; otherwise it passes err on.
func (r *ApiTokenReconciler) recreateIfLost(ctx context.Context, p *pass, desired backend.CreateRequest, lost bool, err error) (*backend.Credentials, *backend.Token, error) {
	at := p.at
	if !lost {
		return nil, nil, err
	}
	sid := at.Status.AccountSID
	r.owned.remove(at.UID, sid)
	r.event(at, corev1.EventTypeWarning, "TokenRecreated", "Token %s is gone from the backend; making a new one", sid)
	return r.findOrCreate(ctx, p, desired, sid)
}

// findOrCreate adopts the token that an earlier, interrupted pass created, or
// creates one. lostSID names a token that was deleted in the backend.
func (r *ApiTokenReconciler) findOrCreate(ctx context.Context, p *pass, desired backend.CreateRequest, lostSID string) (*backend.Credentials, *backend.Token, error) {
	at, be := p.at, p.be
	lookup := mayHaveCreated(at, r.Clock.Now()) || lostSID != ""
	if lookup {
		found, err := r.findOwnTokens(ctx, p, lostSID)
		if err != nil {
			return nil, nil, err
		}
		if len(found) > 0 {
			return r.adopt(ctx, p, desired, found, lostSID)
		}
	}
	if !p.caps.ServerChosenSID {
		desired.SID = firstSID(at, lostSID)
	}
	tok, creds, err := be.Create(ctx, createKey(at, lostSID, lookup), desired)
	if errors.Is(err, backend.ErrInvalid) && !lookup {
		// The key may be that of a create an interrupted pass made with another
		// spec (the backend refuses a replay with a different body): adopt it.
		if found, findErr := r.findOwnTokens(ctx, p, lostSID); findErr == nil && len(found) > 0 {
			return r.adopt(ctx, p, desired, found, lostSID)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create token: %w", err)
	}
	if lookup {
		r.owned.add(at.UID, tok.SID)
	} else {
		r.owned.addFirst(at.UID, tok.SID)
	}
	r.recordToken(p, tok, lostSID)
	r.recordCredentials(at, createdOrRecreated(lostSID), "", tok.SID, creds.Generation)
	return &creds, tok, nil
}

// mayHaveCreated reports whether an earlier pass may have created a token whose
// create can no longer be replayed by its idempotency key: the ApiToken has been
// through a pass that wrote status, or is older than the replay window. A fresh
// ApiToken goes straight to the (idempotent) create: one backend call.
func mayHaveCreated(at *tokensv1alpha1.ApiToken, now time.Time) bool {
	return len(at.Status.Conditions) > 0 || now.Sub(at.CreationTimestamp.Time) > replayWindow
}

// findOwnTokens lists the backend tokens created for this ApiToken that may be its
// current one, oldest first: neither the lost one nor a retiring one.
func (r *ApiTokenReconciler) findOwnTokens(ctx context.Context, p *pass, lostSID string) ([]backend.Token, error) {
	at := p.at
	found, err := r.ownTokens(ctx, p)
	if err != nil {
		return nil, err
	}
	found = adoptionCandidates(found, lostSID, at.Status.RetiringTokens)
	slices.SortFunc(found, func(a, b backend.Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.SID, b.SID))
	})
	return found, nil
}

// adopt takes over the oldest token found and deletes any others: one ApiToken
// owns exactly one current backend token (retiring ones are never found here).
func (r *ApiTokenReconciler) adopt(ctx context.Context, p *pass, desired backend.CreateRequest, found []backend.Token, lostSID string) (*backend.Credentials, *backend.Token, error) {
	at, be := p.at, p.be
	keep := found[0]
	for _, extra := range found[1:] {
		if err := be.Delete(ctx, extra.SID); err != nil && !errors.Is(err, backend.ErrNotFound) {
			return nil, nil, fmt.Errorf("delete duplicate token %s: %w", extra.SID, err)
		}
		r.owned.remove(at.UID, extra.SID)
		r.event(at, corev1.EventTypeWarning, "DuplicateDeleted", "Deleted duplicate token %s", extra.SID)
	}
	logf.FromContext(ctx).Info("adopted backend token created by an earlier attempt", "sid", keep.SID)
	r.recordToken(p, &keep, lostSID)
	r.recordCredentials(at, createdOrRecreated(lostSID), "", keep.SID, keep.Generation)
	updated, err := r.updateToken(ctx, p, desired, &keep)
	if err != nil {
		return nil, nil, err
	}
	return nil, updated, nil
}

// recordToken notes a new backend token in the status. Reset and rotate
// annotations present when the token is first created are recorded as handled:
// the token is new.
func (r *ApiTokenReconciler) recordToken(p *pass, tok *backend.Token, lostSID string) {
	at := p.at
	at.Status.AccountSID = tok.SID
	at.Status.BackendETag = tok.ETag
	at.Status.APIVersion = int32(tok.APIVersion)
	at.Status.State = tokensv1alpha1.TokenState(tok.State)
	if lostSID == "" && len(at.Status.History) == 0 {
		at.Status.LastHandledReset = at.Annotations[tokensv1alpha1.ResetAnnotation]
		at.Status.LastHandledRotate = at.Annotations[tokensv1alpha1.RotateAnnotation]
	}
	p.reads.read()
}

// createdOrRecreated is the history type of a token made for the first time or
// made again after the last one vanished from the backend.
func createdOrRecreated(lostSID string) tokensv1alpha1.CredentialChangeType {
	if lostSID != "" {
		return tokensv1alpha1.CredentialsRecreated
	}
	return tokensv1alpha1.CredentialsCreated
}

// updateToken patches the backend token to the spec, conditionally on the version
// read. A change that the spec did not ask for is drift made in the backend: it is
// reverted and reported as a Warning event.
func (r *ApiTokenReconciler) updateToken(ctx context.Context, p *pass, desired backend.CreateRequest, observed *backend.Token) (*backend.Token, error) {
	at, be := p.at, p.be
	patch, widened := tokenPatch(desired, observed)
	if patch.IsEmpty() {
		r.recordObserved(at, observed)
		return observed, nil
	}
	updated, err := be.Update(ctx, observed.SID, observed.ETag, patch)
	if err != nil {
		return nil, fmt.Errorf("update token %s: %w", observed.SID, err)
	}
	fields := joinFields(patchedFields(patch))
	drift := !specUnconfirmed(at)
	switch {
	case drift && len(widened) > 0:
		r.event(at, corev1.EventTypeWarning, "DriftReverted", "Reverted changes made in the backend that widened access (%s); changed %s", joinFields(widened), fields)
	case drift:
		r.event(at, corev1.EventTypeWarning, "DriftReverted", "Reverted changes made in the backend to %s", fields)
	case patch.State != nil && *patch.State == backend.StateDisabled:
		r.event(at, corev1.EventTypeNormal, "Disabled", "Disabled token %s", observed.SID)
	case patch.State != nil:
		r.event(at, corev1.EventTypeNormal, "Enabled", "Enabled token %s", observed.SID)
	default:
		r.event(at, corev1.EventTypeNormal, "Updated", "Updated %s of token %s", fields, observed.SID)
	}
	r.recordObserved(at, updated)
	return updated, nil
}

func (r *ApiTokenReconciler) recordObserved(at *tokensv1alpha1.ApiToken, tok *backend.Token) {
	at.Status.APIVersion = int32(tok.APIVersion)
	at.Status.State = tokensv1alpha1.TokenState(tok.State)
	at.Status.BackendETag = tok.ETag
}

// reconcileDelete carries out the deletion policy (as far as the TokenBackend
// allows it: effectiveDeletionPolicy), then releases the finalizer. Retiring
// tokens are deleted under every policy.
func (r *ApiTokenReconciler) reconcileDelete(ctx context.Context, p *pass) (ctrl.Result, error) {
	at := p.at
	if !controllerutil.ContainsFinalizer(at, tokensv1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	if err := r.carryOutDeletion(ctx, p, at.Spec.DeletionPolicy); err != nil {
		return r.classify(at, err, DefaultResyncInterval)
	}
	return ctrl.Result{}, r.releaseFinalizer(ctx, p)
}

// carryOutDeletion applies a deletion policy to the ApiToken's backend tokens
// and Secret.
func (r *ApiTokenReconciler) carryOutDeletion(ctx context.Context, p *pass, requested tokensv1alpha1.DeletionPolicy) error {
	at := p.at
	if err := r.releasingBackend(ctx, p); err != nil {
		var stall *stalledError
		if errors.As(err, &stall) && (at.Status.AccountSID == "" || requested == tokensv1alpha1.DeletionPolicyOrphan) {
			// The backend was never usable (nothing was created), or it is gone
			// and the user lets the token go.
			return r.orphanSecrets(ctx, at)
		}
		return err
	}
	policy := effectiveDeletionPolicy(requested, p.tb.Spec.Policy)
	if policy != requested && requested != "" {
		r.event(at, corev1.EventTypeWarning, "DeletionPolicyNotAllowed", "TokenBackend %q does not allow deletionPolicy %s; applied %s", p.tb.Name, requested, policy)
	}
	if policy == tokensv1alpha1.DeletionPolicyOrphan {
		if err := r.releaseRetiringTokens(ctx, p); err != nil {
			return err
		}
		return r.orphanSecrets(ctx, at)
	}
	if err := r.releaseBackendToken(ctx, p, policy); err != nil {
		return err
	}
	if err := r.deleteSource(ctx, at); err != nil {
		return err
	}
	return r.deleteOwnSecret(ctx, at, secretName(at))
}

// releaseFinalizer lets the API server remove a deleted ApiToken, and forgets
// what this process remembers of it.
func (r *ApiTokenReconciler) releaseFinalizer(ctx context.Context, p *pass) error {
	at := p.at
	patch := client.MergeFromWithOptions(at.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(at, tokensv1alpha1.Finalizer)
	if err := r.Patch(ctx, at, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	p.reads.forget()
	r.written.Delete(at.UID)
	r.owned.forget(at.UID)
	return nil
}

// releaseBackendToken deletes or disables every backend token of the ApiToken
// (found by its externalId, so only its own), including one an interrupted create
// may have left unrecorded. Under Disable, retiring tokens are deleted all the
// same: they were to be deleted anyway.
func (r *ApiTokenReconciler) releaseBackendToken(ctx context.Context, p *pass, policy tokensv1alpha1.DeletionPolicy) error {
	at, be := p.at, p.be
	found, err := r.ownTokens(ctx, p) // every token it owns, retiring ones included
	if err != nil {
		return err
	}
	for _, tok := range found {
		if policy == tokensv1alpha1.DeletionPolicyDisable && !isRetiring(at, tok.SID) {
			if tok.State == backend.StateDisabled {
				continue
			}
			state := backend.StateDisabled
			if _, err := be.Update(ctx, tok.SID, "", backend.TokenPatch{State: &state}); err != nil && !errors.Is(err, backend.ErrNotFound) {
				return fmt.Errorf("disable token %s: %w", tok.SID, err)
			}
			r.event(at, corev1.EventTypeNormal, "Disabled", "Disabled token %s as the ApiToken was deleted", tok.SID)
			continue
		}
		if err := be.Delete(ctx, tok.SID); err != nil && !errors.Is(err, backend.ErrNotFound) {
			return fmt.Errorf("delete token %s: %w", tok.SID, err)
		}
		r.owned.remove(at.UID, tok.SID)
		r.event(at, corev1.EventTypeNormal, "Deleted", "Deleted token %s from the backend", tok.SID)
	}
	return nil
}

// isRetiring reports whether the status lists sid as retiring.
func isRetiring(at *tokensv1alpha1.ApiToken, sid string) bool {
	return slices.ContainsFunc(at.Status.RetiringTokens, func(t tokensv1alpha1.RetiringToken) bool { return t.AccountSID == sid })
}

// hasOwnedToken reports whether the ApiToken has owned a backend token: its
// history records one. spec.adopt matters only until then.
func hasOwnedToken(at *tokensv1alpha1.ApiToken) bool {
	return len(at.Status.History) > 0
}
