package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The trust boundary (docs/design.md, "Trust boundary"; invariant 9): a tenant
// who may write an ApiToken's status can name any SID in status.accountSid or
// status.retiringTokens. The operator never reads the credentials of, resets,
// rotates away from, disables or deletes a token named there before this process
// has confirmed, by a fresh read, that the token's externalId is the ApiToken's
// UID. A token it created itself, or found by a lookup by externalId, is
// confirmed by that answer.

// maxRetiringTokens bounds the old tokens one ApiToken keeps during overlaps: a
// rotation while this many are retiring waits (RotationDeferred) until one is
// deleted, so that a storm of rotate nonces cannot fill the backend.
const maxRetiringTokens = 8

// ownedTokens remembers, per ApiToken UID, the backend tokens this process has
// confirmed to carry the ApiToken's externalId, and whether that set is every
// such token (complete: it came from a lookup by externalId, or from a create
// that no earlier token can precede). It is memory only: a restart confirms again.
//
// An ApiToken has one token, two or a few during an overlap: a sorted slice
// kept by value in the map costs a fraction of a set of its own per ApiToken,
// which the cache's memory per token (make bench-scale) counted.
type ownedTokens struct {
	mu    sync.Mutex
	byUID map[types.UID]ownedSet
}

type ownedSet struct {
	sids     []string // sorted, without duplicates
	complete bool
}

func newOwnedTokens() *ownedTokens { return &ownedTokens{byUID: map[types.UID]ownedSet{}} }

// confirmed reports whether sid is known to be the ApiToken's.
func (o *ownedTokens) confirmed(uid types.UID, sid string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := slices.BinarySearch(o.byUID[uid].sids, sid)
	return ok
}

// add records a token confirmed (or made) as the ApiToken's.
func (o *ownedTokens) add(uid types.UID, sid string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.byUID[uid]
	s.sids = insertSorted(s.sids, sid)
	o.byUID[uid] = s
}

// addFirst records the first token of an ApiToken that had none: the set is
// then complete.
func (o *ownedTokens) addFirst(uid types.UID, sid string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.byUID[uid]
	s.sids = insertSorted(s.sids, sid)
	s.complete = true
	o.byUID[uid] = s
}

// replace records the answer of a lookup by externalId: exactly these tokens.
func (o *ownedTokens) replace(uid types.UID, sids []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	sorted := slices.Compact(slices.Sorted(slices.Values(sids)))
	o.byUID[uid] = ownedSet{sids: slices.Clip(sorted), complete: true}
}

// remove drops a token that was deleted.
func (o *ownedTokens) remove(uid types.UID, sid string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.byUID[uid]
	if !ok {
		return
	}
	if i, found := slices.BinarySearch(s.sids, sid); found {
		// A new slice: known's callers may still hold the old one.
		s.sids = slices.Delete(slices.Clone(s.sids), i, i+1)
		o.byUID[uid] = s
	}
}

// known returns the tokens known to be the ApiToken's, sorted, and whether they
// are all of them.
func (o *ownedTokens) known(uid types.UID) (sids []string, complete bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.byUID[uid]
	return slices.Clone(s.sids), s.complete
}

// forget drops what is known of an ApiToken that is gone.
func (o *ownedTokens) forget(uid types.UID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.byUID, uid)
}

// insertSorted returns sids with sid in its place, as a new slice when it was
// not there (never appending into a slice a caller may hold).
func insertSorted(sids []string, sid string) []string {
	i, found := slices.BinarySearch(sids, sid)
	if found {
		return sids
	}
	return slices.Insert(slices.Clip(slices.Clone(sids)), i, sid)
}

// foreignTokenError is a SID in the status that is not the ApiToken's token.
type foreignTokenError struct{ sid string }

func (e foreignTokenError) Error() string {
	return fmt.Sprintf("token %s named in the status is not this ApiToken's", e.sid)
}

// confirmOwned returns nil when sid is the ApiToken's token: confirmed earlier
// in this process, or now by a fresh lookup of the ApiToken's tokens by
// externalId (one call that confirms the current and the retiring tokens alike,
// and tells the set complete). A SID the lookup does not list is read: gone is
// backend.ErrNotFound, another owner's a foreignTokenError.
func (r *ApiTokenReconciler) confirmOwned(ctx context.Context, p *pass, sid string) error {
	at, be := p.at, p.be
	if r.owned.confirmed(at.UID, sid) {
		return nil
	}
	if _, complete := r.owned.known(at.UID); !complete {
		if _, err := r.ownTokens(ctx, p); err != nil {
			return err
		}
		if r.owned.confirmed(at.UID, sid) {
			return nil
		}
	}
	tok, _, err := be.Get(ctx, sid, "")
	if err != nil {
		return fmt.Errorf("read token %s: %w", sid, err)
	}
	return r.checkOwner(at, tok)
}

// checkOwner confirms a token read in full: its externalId is the ApiToken's
// UID, or it is a foreignTokenError.
func (r *ApiTokenReconciler) checkOwner(at *tokensv1alpha1.ApiToken, tok *backend.Token) error {
	if tok.ExternalID != string(at.UID) {
		return foreignTokenError{sid: tok.SID}
	}
	r.owned.add(at.UID, tok.SID)
	return nil
}

// ownTokens looks the ApiToken's tokens up by externalId (every one of them,
// retiring ones included) and remembers them as its own. Only tokens whose
// externalId is the UID count, whatever the backend's filter returned.
func (r *ApiTokenReconciler) ownTokens(ctx context.Context, p *pass) ([]backend.Token, error) {
	at, be := p.at, p.be
	found, err := be.FindByExternalID(ctx, string(at.UID))
	if err != nil {
		return nil, fmt.Errorf("find tokens of %s: %w", at.UID, err)
	}
	found = slices.DeleteFunc(found, func(t backend.Token) bool { return t.ExternalID != string(at.UID) })
	sids := make([]string, len(found))
	for i, t := range found {
		sids[i] = t.SID
	}
	r.owned.replace(at.UID, sids)
	return found, nil
}

// isForeign reports a foreignTokenError.
func isForeign(err error) bool { return errors.As(err, new(foreignTokenError)) }

// rebuildFromOwnTokens replaces a status that named a foreign token with what a
// lookup by externalId finds: a Warning ForeignToken, then the current token and
// the retiring ones from the backend's answer (rebuildTokens). It reports whether
// the ApiToken still has a current token; without one, the pass finds or makes one.
func (r *ApiTokenReconciler) rebuildFromOwnTokens(ctx context.Context, p *pass, foreign string) (bool, error) {
	at := p.at
	r.event(at, corev1.EventTypeWarning, tokensv1alpha1.ReasonForeignToken,
		"Token %s named in the status is not this ApiToken's: it was not used; the status is rebuilt from the backend", foreign)
	found, err := r.ownTokens(ctx, p)
	if err != nil {
		return false, err
	}
	current, retiring := rebuildTokens(found, at.Status, r.Clock.Now(), rotationOverlap(at))
	at.Status.RetiringTokens = retiring
	if current == nil {
		at.Status.AccountSID, at.Status.BackendETag = "", ""
		p.reads.readAtNextPass()
		return false, nil
	}
	at.Status.AccountSID = current.SID
	r.recordObserved(at, current)
	p.reads.readAtNextPass()
	return true, nil
}

// rebuildTokens decides, from the tokens found by the ApiToken's externalId,
// which is current and which retire: the status's current token when it is among
// them, otherwise the newest found that is not listed as retiring; every other
// token found retires, keeping the deleteAfter the status gave it, or overlap
// from now when the status did not list it (none is ever left untracked). SIDs
// of the status that were not found are dropped.
func rebuildTokens(found []backend.Token, st tokensv1alpha1.ApiTokenStatus, now time.Time, overlap time.Duration) (*backend.Token, []tokensv1alpha1.RetiringToken) {
	deadline := map[string]metav1.Time{}
	for _, t := range st.RetiringTokens {
		deadline[t.AccountSID] = t.DeleteAfter
	}
	var current *backend.Token
	for i := range found {
		if found[i].SID == st.AccountSID {
			current = &found[i]
		}
	}
	if current == nil {
		for i := range found {
			if _, retiring := deadline[found[i].SID]; retiring {
				continue
			}
			if current == nil || found[i].CreatedAt.After(current.CreatedAt) ||
				(found[i].CreatedAt.Equal(current.CreatedAt) && found[i].SID > current.SID) {
				current = &found[i]
			}
		}
	}
	var retiring []tokensv1alpha1.RetiringToken
	for _, t := range found {
		if current != nil && t.SID == current.SID {
			continue
		}
		after, ok := deadline[t.SID]
		if !ok {
			after = metav1.NewTime(now.Add(overlap))
		}
		retiring = append(retiring, tokensv1alpha1.RetiringToken{AccountSID: t.SID, DeleteAfter: after})
	}
	slices.SortFunc(retiring, func(a, b tokensv1alpha1.RetiringToken) int { return a.DeleteAfter.Compare(b.DeleteAfter.Time) })
	return current, retiring
}

// trackKnownTokens lists, before a status write, every token this process knows
// to be the ApiToken's that the status names neither as current nor as retiring:
// a token made by a pass whose status write was lost, or by a rotation whose
// record a later pass rolled back. It retires from overlap after now. The
// current token is never listed as retiring.
func trackKnownTokens(st *tokensv1alpha1.ApiTokenStatus, known []string, now time.Time, overlap time.Duration) {
	st.RetiringTokens = slices.DeleteFunc(st.RetiringTokens, func(t tokensv1alpha1.RetiringToken) bool {
		return t.AccountSID == st.AccountSID && st.AccountSID != ""
	})
	if st.AccountSID == "" {
		return // no token recorded yet: the pass that makes one records it
	}
	for _, sid := range known {
		if sid == st.AccountSID || slices.ContainsFunc(st.RetiringTokens, func(t tokensv1alpha1.RetiringToken) bool { return t.AccountSID == sid }) {
			continue
		}
		st.RetiringTokens = append(st.RetiringTokens, tokensv1alpha1.RetiringToken{AccountSID: sid, DeleteAfter: metav1.NewTime(now.Add(overlap))})
	}
}
