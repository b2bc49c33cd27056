package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The credential lifecycle phase: resets, rotations in place and with overlap,
// the history that makes every nonce act once, and the retirement of old tokens.

// changeCredentials carries out a due reset or rotation and records it. It
// returns the new credentials, and the new backend token when one was created.
// The token it resets or rotates away from is confirmed as the ApiToken's first.
func (r *ApiTokenReconciler) changeCredentials(ctx context.Context, p *pass, desired backend.CreateRequest, c credentialChange) (*backend.Credentials, *backend.Token, error) {
	at, be := p.at, p.be
	sid := at.Status.AccountSID
	if err := r.confirmOwned(ctx, p, sid); err != nil {
		return nil, nil, err
	}
	if c.overlap > 0 || !p.caps.InPlaceReset {
		// A backend that cannot reset in place rotates without overlap: a new
		// token, the old one retired at once.
		return r.rotateWithOverlap(ctx, p, desired, c)
	}
	creds, err := be.Reset(ctx, sid, c.key, "")
	if err != nil {
		return nil, nil, fmt.Errorf("%s token %s: %w", verbOf(c.kind), sid, err)
	}
	if c.kind == tokensv1alpha1.CredentialsReset {
		tokenResets.Inc()
		r.event(at, corev1.EventTypeNormal, "Reset", "Reset the auth token of %s for reset request %q", sid, c.nonce) // already in its recorded form
		now := metav1.NewTime(r.Clock.Now())
		at.Status.LastResetTime = &now
	} else {
		tokenRotations.WithLabelValues("in-place").Inc()
		r.event(at, corev1.EventTypeNormal, "Rotated", "Rotated the auth token of %s in place%s", sid, forNonce(c.nonce))
	}
	r.markHandled(at, c)
	r.recordCredentials(at, c.kind, c.nonce, sid, creds.Generation)
	// The reset made a new version. The answer is as good as a read: the next
	// routine read is a resync from now.
	at.Status.BackendETag = creds.ETag
	if creds.ETag == "" {
		// A replayed reset (a retry of a call whose answer was lost, or a pass
		// repeated) carries no ETag: the token is read now, so that the status
		// written with the new credentials holds its version, and the next
		// routine read is a 304 rather than a status write found a resync later.
		if tok, _, err := be.Get(ctx, sid, ""); err == nil {
			at.Status.BackendETag = tok.ETag
		}
	}
	p.reads.read()
	return &creds, nil, nil
}

// rotateWithOverlap creates a new backend token with the same settings and
// external id, makes it current, and lists the old one as retiring until its
// overlap ends: both verify meanwhile, so no consumer is refused. The create is
// keyed by the rotation, so a pass repeated after a crash replays it. Before the
// create, the ApiToken's tokens are known in full (a lookup by externalId once
// per process), so that the status written at the end of the pass lists every
// one of them (trackKnownTokens).
func (r *ApiTokenReconciler) rotateWithOverlap(ctx context.Context, p *pass, desired backend.CreateRequest, c credentialChange) (*backend.Credentials, *backend.Token, error) {
	at, be := p.at, p.be
	old := at.Status.AccountSID
	if _, complete := r.owned.known(at.UID); !complete {
		if _, err := r.ownTokens(ctx, p); err != nil {
			return nil, nil, err
		}
	}
	if !p.caps.ServerChosenSID {
		sid, err := r.successorFor(ctx, p, c.key)
		if err != nil {
			return nil, nil, err
		}
		desired.SID = sid
	}
	tok, creds, err := be.Create(ctx, c.key, desired)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate token %s: create its successor: %w", old, err)
	}
	r.owned.add(at.UID, tok.SID)
	r.markHandled(at, c)
	if tok.SID != old { // the same SID: an earlier pass adopted the successor already
		deleteAfter := metav1.NewTime(r.Clock.Now().Add(c.overlap))
		at.Status.RetiringTokens = slices.DeleteFunc(at.Status.RetiringTokens, func(t tokensv1alpha1.RetiringToken) bool { return t.AccountSID == tok.SID })
		at.Status.RetiringTokens = append(at.Status.RetiringTokens, tokensv1alpha1.RetiringToken{AccountSID: old, DeleteAfter: deleteAfter})
		tokenRotations.WithLabelValues("overlap").Inc()
		r.event(at, corev1.EventTypeNormal, "Rotated", "Rotated to token %s%s; %s stays valid until %s",
			tok.SID, forNonce(c.nonce), old, deleteAfter.UTC().Format(time.RFC3339))
	}
	at.Status.AccountSID = tok.SID
	r.recordObserved(at, tok)
	p.reads.read() // the successor was just read back whole
	r.recordCredentials(at, c.kind, c.nonce, tok.SID, creds.Generation)
	return &creds, tok, nil
}

// markHandled records the nonce of a change as handled.
func (r *ApiTokenReconciler) markHandled(at *tokensv1alpha1.ApiToken, c credentialChange) {
	switch {
	case c.nonce == "":
	case c.kind == tokensv1alpha1.CredentialsReset:
		at.Status.LastHandledReset = c.nonce
	default:
		at.Status.LastHandledRotate = c.nonce
	}
}

// recordCredentials notes new credentials: a history entry, when they were
// issued, and when they rotate next.
func (r *ApiTokenReconciler) recordCredentials(at *tokensv1alpha1.ApiToken, kind tokensv1alpha1.CredentialChangeType, nonce, sid string, generation int64) {
	now := metav1.NewTime(r.Clock.Now())
	at.Status.History = withChange(at.Status.History, tokensv1alpha1.CredentialChange{
		Type: kind, Nonce: nonce, Time: now, AccountSID: sid, Generation: generation,
	})
	at.Status.CredentialsIssuedAt = &now
	at.Status.NextRotationTime = nextRotationTime(at)
}

// retireTokens deletes the retiring tokens whose overlap has ended (all of them
// when the ApiToken is disabled: disabling ends every overlap) and returns when
// the next one is due. A token already gone is not an error: a repeated pass
// after a crash deletes again. Each is confirmed as the ApiToken's before it is
// deleted; a foreign one is dropped from the list and never touched.
func (r *ApiTokenReconciler) retireTokens(ctx context.Context, p *pass) (time.Time, error) {
	at := p.at
	due, kept, next := retiringDue(at.Status.RetiringTokens, at.Spec.Disabled, r.Clock.Now())
	for i, t := range due {
		if err := r.deleteOwnToken(ctx, p, t.AccountSID); err != nil {
			at.Status.RetiringTokens = slices.Concat(kept, due[i:])
			return time.Time{}, fmt.Errorf("delete retiring token %s: %w", t.AccountSID, err)
		}
	}
	at.Status.RetiringTokens = kept
	return next, nil
}

// deleteOwnToken deletes a retiring token once it is confirmed as the
// ApiToken's. A token already gone, or another owner's (a Warning
// ForeignToken, nothing deleted), is done with.
func (r *ApiTokenReconciler) deleteOwnToken(ctx context.Context, p *pass, sid string) error {
	at, be := p.at, p.be
	err := r.confirmOwned(ctx, p, sid)
	switch {
	case errors.Is(err, backend.ErrNotFound):
		r.owned.remove(at.UID, sid)
		return nil
	case isForeign(err):
		r.event(at, corev1.EventTypeWarning, tokensv1alpha1.ReasonForeignToken, "Retiring token %s named in the status is not this ApiToken's: it was left alone", sid)
		return nil
	case err != nil:
		return err
	}
	if err := be.Delete(ctx, sid); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	r.owned.remove(at.UID, sid)
	r.event(at, corev1.EventTypeNormal, "Retired", "Deleted token %s: its overlap ended", sid)
	return nil
}

// releaseRetiringTokens deletes every retiring token of an ApiToken deleted under
// Orphan: the current token is left to the user, but the old ones were to be
// deleted anyway and nobody would delete them after the ApiToken is gone.
func (r *ApiTokenReconciler) releaseRetiringTokens(ctx context.Context, p *pass) error {
	at := p.at
	for _, t := range at.Status.RetiringTokens {
		if err := r.deleteOwnToken(ctx, p, t.AccountSID); err != nil {
			return fmt.Errorf("delete retiring token %s: %w", t.AccountSID, err)
		}
	}
	return nil
}

// newCredentialChange returns the credential change this pass recorded, if any:
// the newest history entry when the history grew.
func newCredentialChange(original, at *tokensv1alpha1.ApiToken) (tokensv1alpha1.CredentialChange, bool) {
	if len(at.Status.History) == 0 {
		return tokensv1alpha1.CredentialChange{}, false
	}
	newest := at.Status.History[0]
	if len(original.Status.History) > 0 && original.Status.History[0].Time.Equal(&newest.Time) &&
		original.Status.History[0].AccountSID == newest.AccountSID && original.Status.History[0].Generation == newest.Generation {
		return tokensv1alpha1.CredentialChange{}, false
	}
	return newest, true
}

func verbOf(kind tokensv1alpha1.CredentialChangeType) string {
	if kind == tokensv1alpha1.CredentialsReset {
		return "reset"
	}
	return "rotate"
}

func forNonce(nonce string) string {
	if nonce == "" {
		return " (scheduled)"
	}
	return fmt.Sprintf(" for rotate request %q", nonce)
}
