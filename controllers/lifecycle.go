package controllers

import (
	"math"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The credential lifecycle's pure decisions: which change of credentials is due,
// whether a nonce was handled, which backend tokens are current, retiring or
// duplicates, and what a restart target's pod template should say.

// historyLimit is how many credential changes status.history keeps.
const historyLimit = 10

// credentialChange is a change of credentials due in this pass.
type credentialChange struct {
	kind  tokensv1alpha1.CredentialChangeType // Reset or Rotated
	nonce string                              // the annotation value; empty for a scheduled rotation
	// key identifies the change for the backend's idempotency: it changes only
	// once the change is recorded in the status, so a pass repeated after a crash
	// replays the same backend call.
	key string
	// overlap > 0 rotates to a new backend token and keeps the old one this long.
	overlap time.Duration
}

// nonceHandled reports whether an annotation value asks for nothing: it is empty,
// the last handled one, or found in the history with the same kind of change. A
// value restored by a GitOps tool (A → B → A) is therefore never acted on again.
func nonceHandled(nonce, lastHandled string, history []tokensv1alpha1.CredentialChange, kind tokensv1alpha1.CredentialChangeType) bool {
	if !resetDue(nonce, lastHandled) {
		return true
	}
	return slices.ContainsFunc(history, func(c tokensv1alpha1.CredentialChange) bool {
		return c.Type == kind && c.Nonce == nonce
	})
}

// dueCredentialChange decides which change of credentials is due, if any: the
// reset annotation first (always in place: a leaked token must stop working now),
// then the rotate annotation, then the rotation schedule. A rotation with overlap
// waits while the ApiToken has maxRetiringTokens retiring (rotationDeferred); a
// reset never waits.
func dueCredentialChange(at *tokensv1alpha1.ApiToken, now time.Time) (credentialChange, bool) {
	c, ok := requestedCredentialChange(at, now)
	if ok && c.overlap > 0 && len(at.Status.RetiringTokens) >= maxRetiringTokens {
		return credentialChange{}, false
	}
	return c, ok
}

// rotationDeferred reports a rotation that is asked for but waits for a
// retiring token to be deleted.
func rotationDeferred(at *tokensv1alpha1.ApiToken, now time.Time) bool {
	c, ok := requestedCredentialChange(at, now)
	return ok && c.overlap > 0 && len(at.Status.RetiringTokens) >= maxRetiringTokens
}

// requestedCredentialChange is the change of credentials the annotations and the
// schedule ask for. Nonces are compared in their recorded form (recordedNonce).
func requestedCredentialChange(at *tokensv1alpha1.ApiToken, now time.Time) (credentialChange, bool) {
	if raw := at.Annotations[tokensv1alpha1.ResetAnnotation]; !nonceHandled(recordedNonce(raw), at.Status.LastHandledReset, at.Status.History, tokensv1alpha1.CredentialsReset) {
		return credentialChange{kind: tokensv1alpha1.CredentialsReset, nonce: recordedNonce(raw), key: resetKey(at, raw)}, true
	}
	overlap := rotationOverlap(at)
	if raw := at.Annotations[tokensv1alpha1.RotateAnnotation]; !nonceHandled(recordedNonce(raw), at.Status.LastHandledRotate, at.Status.History, tokensv1alpha1.CredentialsRotated) {
		return credentialChange{kind: tokensv1alpha1.CredentialsRotated, nonce: recordedNonce(raw), key: rotateKey(at, raw), overlap: overlap}, true
	}
	if next := nextRotationTime(at); next != nil && !now.Before(next.Time) {
		return credentialChange{kind: tokensv1alpha1.CredentialsRotated, key: scheduledRotationKey(at, next.Time), overlap: overlap}, true
	}
	return credentialChange{}, false
}

// maxRecordedNonce is the longest nonce the status keeps as it is; a longer one
// is kept (and compared) as "sha256:" and the first 32 hex digits of its hash,
// so that a nonce of any length fits the status and acts exactly once.
const maxRecordedNonce = 128

// recordedNonce is the form a nonce takes in status.history and lastHandled*.
func recordedNonce(nonce string) string {
	if len(nonce) <= maxRecordedNonce {
		return nonce
	}
	return "sha256:" + shortHash(nonce)
}

// rotationOverlap is spec.rotation.overlap, 0 when unset.
func rotationOverlap(at *tokensv1alpha1.ApiToken) time.Duration {
	if at.Spec.Rotation.Overlap == nil {
		return 0
	}
	return max(0, at.Spec.Rotation.Overlap.Duration)
}

// nextRotationTime is credentialsIssuedAt + spec.rotation.period, nil when no
// period is set or nothing was issued yet.
func nextRotationTime(at *tokensv1alpha1.ApiToken) *metav1.Time {
	period := at.Spec.Rotation.Period
	issued := at.Status.CredentialsIssuedAt
	if period == nil || period.Duration <= 0 || issued == nil {
		return nil
	}
	next := metav1.NewTime(issued.Add(period.Duration))
	return &next
}

// withChange returns the history with the change first, at most historyLimit long.
func withChange(history []tokensv1alpha1.CredentialChange, c tokensv1alpha1.CredentialChange) []tokensv1alpha1.CredentialChange {
	out := append([]tokensv1alpha1.CredentialChange{c}, history...)
	if len(out) > historyLimit {
		out = out[:historyLimit]
	}
	return out
}

// latestGeneration is the newest credential generation of the token sid known
// from the history, 0 when none.
func latestGeneration(history []tokensv1alpha1.CredentialChange, sid string) int64 {
	var latest int64
	for _, c := range history {
		if c.AccountSID == sid {
			latest = max(latest, c.Generation)
		}
	}
	return latest
}

// staleCredentials reports whether credentials returned by a reset or rotation
// are older than what was already delivered for the same token (delivered: the
// Secret holds intact credentials of creds' token, of that generation): a
// replayed reply whose auth token a later reset revoked. Such credentials are
// never written.
func staleCredentials(creds backend.Credentials, deliveredGeneration int64, delivered bool, history []tokensv1alpha1.CredentialChange) bool {
	known := latestGeneration(history, creds.AccountSID)
	if delivered {
		known = max(known, deliveredGeneration)
	}
	return creds.Generation < known
}

// retiringDue splits the retiring tokens into those whose overlap has ended (all
// of them when the ApiToken is disabled: disabling ends every overlap) and those
// still kept, and returns when the next one is due (zero when none is kept).
func retiringDue(retiring []tokensv1alpha1.RetiringToken, disabled bool, now time.Time) (due, kept []tokensv1alpha1.RetiringToken, next time.Time) {
	for _, t := range retiring {
		if disabled || !now.Before(t.DeleteAfter.Time) {
			due = append(due, t)
			continue
		}
		kept = append(kept, t)
		if next.IsZero() || t.DeleteAfter.Time.Before(next) {
			next = t.DeleteAfter.Time
		}
	}
	return due, kept, next
}

// adoptionCandidates are the tokens found by the ApiToken's external id that may
// become its current token after the recorded one was lost: neither the lost one
// nor a retiring one (those are deleted only by their deleteAfter).
func adoptionCandidates(found []backend.Token, lostSID string, retiring []tokensv1alpha1.RetiringToken) []backend.Token {
	return slices.DeleteFunc(slices.Clone(found), func(t backend.Token) bool {
		return t.SID == lostSID || slices.ContainsFunc(retiring, func(r tokensv1alpha1.RetiringToken) bool { return r.AccountSID == t.SID })
	})
}

// credentialsRef is the pod-template annotation value for credentials: not
// secret, and the same on every pass for one change, so a workload is rolled at
// most once per change.
func credentialsRef(sid string, generation int64) string {
	return sid + "/" + strconv.FormatInt(generation, 10)
}

// rollsTargets reports whether a credential change restarts the consumers: a
// reset, a rotation or a recreation changes what they must use; a first create
// or an adoption does not.
func rollsTargets(kind tokensv1alpha1.CredentialChangeType) bool {
	switch kind {
	case tokensv1alpha1.CredentialsReset, tokensv1alpha1.CredentialsRotated, tokensv1alpha1.CredentialsRecreated:
		return true
	}
	return false
}

// firstReadOffset is when, after the start of a process, the k-th token it meets
// unread gets its first backend read. The offsets follow the golden-ratio (Weyl)
// sequence over 97% of the resync interval: however many tokens there are, any
// stretch of the interval holds its share of them give or take one or two, so a
// restart reads at the steady-state rate (+3%), not in one burst, and each token
// is still read within one interval (the last 3% leave room for the start).
func firstReadOffset(k uint64, resync time.Duration) time.Duration {
	return time.Duration(goldenFraction(k) * firstReadSpread * float64(resync))
}

// goldenFraction is the k-th point of the golden-ratio sequence in [0, 1):
// any first k points of it are spread about evenly.
func goldenFraction(k uint64) float64 {
	_, frac := math.Modf(float64(k) * goldenRatioConjugate)
	return frac
}

const (
	goldenRatioConjugate = 0.6180339887498949
	// firstReadSpread is the part of the resync interval the first reads fill.
	// The rest is for what comes before the first token is met (leadership,
	// the caches' sync: 2-3 s at 10,000 tokens on a busy 2-core machine) and for
	// reads that a busy process makes a tick or two late, so that every token is
	// still read within one interval of the restart: at 0.97, make bench-scale
	// once saw the last re-check 61 s after leadership with a 1-minute interval.
	// Reading the same tokens over 95 % of the interval is 5 % above the steady
	// rate.
	firstReadSpread = 0.95
)

// nextWake is when a Ready ApiToken needs its next pass: a scheduled rotation or
// the end of an overlap, whichever comes first; zero (no requeue) when neither is
// set. Its routine backend reads are its reader's (read_schedule.go), and every other change
// (spec, annotations, Secret, TokenBackend, namespace labels) is watched.
func nextWake(now time.Time, rotation *metav1.Time, retire time.Time) time.Duration {
	var wake time.Duration
	for _, at := range []time.Time{retire, timeOf(rotation)} {
		if at.IsZero() {
			continue
		}
		// A moment late rather than early: a pass before the due time finds
		// nothing due and would have to wake again.
		after := max(at.Sub(now)+10*time.Millisecond, 10*time.Millisecond)
		if wake == 0 || after < wake {
			wake = after
		}
	}
	return wake
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}
