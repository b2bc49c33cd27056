package controllers

import (
	"time"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// pass is one pass over an ApiToken: what it has read (each thing once) and
// what it holds. The phases of Reconcile take the pass and fill it in, in this
// order, rather than hand values on one by one.
type pass struct {
	// at is the ApiToken whose status the pass changes; original is as it was
	// read, for the one status patch and to tell which credential change the
	// pass recorded.
	at, original *tokensv1alpha1.ApiToken
	// reads is the pass's lease on the ApiToken's backend reads (read_schedule.go).
	reads *readLease

	// Set by resolveBackend: the TokenBackend (read once a pass), its client and
	// resync interval. be is nil while the backend is not usable.
	tb     *tokensv1alpha1.TokenBackend
	be     backend.Backend
	caps   backend.Capabilities
	resync time.Duration

	// lookup is what checkSecretAvailable found of the Secret, if it looked.
	lookup secretLookup
	// creds are the credentials a create, reset or rotation of this pass
	// returned; observed is the backend token as read or made in this pass. Both
	// are nil when the token was not due a backend call.
	creds    *backend.Credentials
	observed *backend.Token
	// writtenAhead is the secret this pass wrote ahead (or found written ahead)
	// for a change, for a backend that never returns secrets (write_ahead.go).
	writtenAhead *pendingCredentials
	// delivered is what the Secret holds once reconcileSecret wrote or checked it.
	delivered deliveredCredentials
	// renderScopes, when set, are the scopes a rendered Secret shows instead of
	// the spec's: those of the backend token while the spec may not be applied.
	renderScopes []string
	// spec memoizes specDigest of the ApiToken, which a pass does not change.
	spec specSum
	// ready is set when the pass ends Ready: its lease's end schedules the next
	// routine read.
	ready bool
}

// resyncOrDefault is the resync interval to retry with, the default before the
// backend is resolved.
func (p *pass) resyncOrDefault() time.Duration {
	if p.resync > 0 {
		return p.resync
	}
	return DefaultResyncInterval
}

// layout is the Secret layout the spec asks for, with the TokenBackend's URL
// (empty before the backend is resolved).
func (p *pass) layout() secretLayout {
	l := layoutOf(p.at, endpointsOf(p.tb))
	if p.renderScopes != nil && l.rendered() {
		l.input.Scopes = p.renderScopes
		l.digest = layoutDigest(l)
	}
	return l
}

// specDigest is the digest of the spec's backend fields (specDigest), computed
// once a pass.
func (p *pass) specDigest() specSum {
	if p.spec == (specSum{}) {
		p.spec = specDigest(p.at)
	}
	return p.spec
}

// writtenAheadFor is the key of the change whose secret written ahead creds
// are, if this pass wrote one ahead for them.
func (p *pass) writtenAheadFor(creds backend.Credentials) string {
	w := p.writtenAhead
	if w == nil || w.sid != creds.AccountSID || w.secret.Reveal() != creds.AuthToken.Reveal() {
		return ""
	}
	return w.key
}
