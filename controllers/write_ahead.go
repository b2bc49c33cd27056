package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Secrets the backend never returns (a type without RetrievableSecrets, such as
// Hydra): the operator generates each secret itself and writes it ahead into a
// pending Secret before the backend call that sets it, so that a crash or a lost
// answer never leaves a live secret that nobody holds. The pending Secret is
// deleted once the credentials are delivered; a pass that finds one left over
// asks the backend's data plane whether its secret is live (recoverPending) and
// delivers it, or discards it. The consumer's Secret only ever receives a secret
// the backend accepted. docs/design.md, "Secrets the backend never returns".

// pendingSecretType marks the pending Secret: credentials not yet delivered,
// which no workload is meant to mount.
const pendingSecretType corev1.SecretType = "tokens.apitoken.dev/credentials-pending"

// pendingKeyKey is the data key of the idempotency key of the change the
// pending secret is for: a replay of that change reuses the secret.
const pendingKeyKey = "idempotencyKey"

// writtenAheadForAnnotation, on the source Secret, is the idempotency key of
// the change whose secret written ahead the source holds. The pending Secret is
// settled (deleted) when its secret is delivered, before the pass's status
// write records the change: a crash or a failure in between (a restart target
// that cannot be rolled, a lost status write) makes the next pass replay the
// change, and the replay must reuse the delivered secret rather than set
// another one, which would change the credentials twice for one change and
// refuse the consumers that hold the first.
const writtenAheadForAnnotation = "tokens.apitoken.dev/written-ahead-for"

// pendingLayout is the layout of a pending Secret.
var pendingLayout = secretLayout{
	secretType: pendingSecretType, sidKey: tokensv1alpha1.DefaultAccountSIDKey, tokenKey: tokensv1alpha1.DefaultAuthTokenKey,
	keys: []string{tokensv1alpha1.DefaultAccountSIDKey, tokensv1alpha1.DefaultAuthTokenKey, pendingKeyKey}, keepSID: true, keepToken: true,
}

// pendingSecretName is "<secret name>-pending", or a name derived from the
// UID when that would be too long for a Secret name.
func pendingSecretName(at *tokensv1alpha1.ApiToken) string {
	if name := secretName(at) + "-pending"; len(name) <= 253 {
		return name
	}
	return "apitoken-pending-" + shortHash(string(at.UID))
}

// generatedSecret is the form of a secret the operator generates: 32 random
// bytes, base64url without padding. A pending secret of another form (written
// by someone else) is never sent to the backend.
var generatedSecret = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// newClientSecret generates a secret.
func newClientSecret() (backend.AuthToken, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a secret: %w", err)
	}
	return backend.AuthToken(base64.RawURLEncoding.EncodeToString(b)), nil
}

// pendingCredentials is what a pending Secret holds.
type pendingCredentials struct {
	key    string
	sid    string
	secret backend.AuthToken
}

// writeAheadBackend is the pass's backend for a type without
// RetrievableSecrets: Create and Reset send a secret written ahead, and
// Credentials (the operator lost its copy) finds the live one or sets a new one.
type writeAheadBackend struct {
	backend.Backend
	r *ApiTokenReconciler
	p *pass
}

// Create implements backend.Backend with a secret written ahead for key.
func (w writeAheadBackend) Create(ctx context.Context, key string, req backend.CreateRequest) (*backend.Token, backend.Credentials, error) {
	secret, err := w.secretFor(ctx, key, req.SID)
	if err != nil {
		return nil, backend.Credentials{}, err
	}
	req.AuthToken = secret
	return w.Backend.Create(ctx, key, req)
}

// Reset implements backend.Backend with a secret written ahead for key.
func (w writeAheadBackend) Reset(ctx context.Context, sid, key string, _ backend.AuthToken) (backend.Credentials, error) {
	secret, err := w.secretFor(ctx, key, sid)
	if err != nil {
		return backend.Credentials{}, err
	}
	return w.Backend.Reset(ctx, sid, key, secret)
}

// Credentials implements backend.Backend for a Secret that must be written again
// when the operator's copy of the secret (the source Secret) is gone: a pending
// secret of sid that the backend accepts is the live one; otherwise the only way
// to credentials anyone holds is a new secret (a Warning SecretRegenerated).
func (w writeAheadBackend) Credentials(ctx context.Context, sid string) (backend.Credentials, error) {
	tok, _, err := w.Get(ctx, sid, "")
	if err != nil {
		return backend.Credentials{}, err
	}
	if pend, ok, err := w.r.readPending(ctx, w.p.at); err != nil {
		return backend.Credentials{}, err
	} else if ok && pend.sid == sid {
		live, err := w.SecretAccepted(ctx, sid, pend.secret)
		if err != nil {
			return backend.Credentials{}, err
		}
		if live {
			return backend.Credentials{AccountSID: sid, AuthToken: pend.secret, Generation: tok.Generation}, nil
		}
	}
	key := regenerateKey(w.p.at, sid, tok.Generation)
	creds, err := w.Reset(ctx, sid, key, "")
	if err != nil {
		return backend.Credentials{}, err
	}
	w.r.event(w.p.at, corev1.EventTypeWarning, "SecretRegenerated",
		"The backend never returns a secret and the operator's copy of %s's is gone: set a new one", sid)
	return creds, nil
}

// secretFor returns the secret to send for the change key on sid: the pending
// one when it was written for the same change (a replay after a crash or a lost
// answer), the one delivered for it when the pending Secret is settled already
// (a replay of a change whose status write was lost), else a new one, written
// ahead before it is returned.
func (w writeAheadBackend) secretFor(ctx context.Context, key, sid string) (backend.AuthToken, error) {
	secret, err := w.findOrWriteAhead(ctx, key, sid)
	if err == nil {
		w.p.writtenAhead = &pendingCredentials{key: key, sid: sid, secret: secret}
	}
	return secret, err
}

func (w writeAheadBackend) findOrWriteAhead(ctx context.Context, key, sid string) (backend.AuthToken, error) {
	pend, ok, err := w.r.readPending(ctx, w.p.at)
	if err != nil {
		return "", err
	}
	if ok && pend.key == key && pend.sid == sid {
		return pend.secret, nil
	}
	if delivered, ok, err := w.r.deliveredFor(ctx, w.p.at, key, sid); err != nil || ok {
		return delivered, err
	}
	secret, err := newClientSecret()
	if err != nil {
		return "", err
	}
	if err := w.r.writePending(ctx, w.p.at, pendingCredentials{key: key, sid: sid, secret: secret}); err != nil {
		return "", err
	}
	return secret, nil
}

// readPending reads the ApiToken's pending Secret: ok is false when there is
// none (the cache, which holds the operator's Secrets, says so at no cost), or
// when it is not the operator's own or holds no generated secret.
func (r *ApiTokenReconciler) readPending(ctx context.Context, at *tokensv1alpha1.ApiToken) (pendingCredentials, bool, error) {
	head, err := r.cachedSecret(ctx, at, pendingSecretName(at))
	if head == nil || err != nil {
		return pendingCredentials{}, false, ignoreConflict(err)
	}
	return r.fetchPending(ctx, at)
}

// fetchPending reads the data of the ApiToken's pending Secret, known to be
// the operator's own, through the API: ok is false when it is gone, or holds no
// generated secret.
func (r *ApiTokenReconciler) fetchPending(ctx context.Context, at *tokensv1alpha1.ApiToken) (pendingCredentials, bool, error) {
	name := pendingSecretName(at)
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return pendingCredentials{}, false, nil
		}
		return pendingCredentials{}, false, fmt.Errorf("get Secret %s: %w", name, err)
	}
	pend := pendingCredentials{
		key: string(s.Data[pendingKeyKey]), sid: string(s.Data[pendingLayout.sidKey]),
		secret: backend.AuthToken(s.Data[pendingLayout.tokenKey]),
	}
	if !isControlledBy(s, at) || s.Type != pendingSecretType || !generatedSecret.MatchString(pend.secret.Reveal()) {
		return pendingCredentials{}, false, nil
	}
	return pend, true, nil
}

// writePending writes the secret ahead. Its fingerprint covers the change, the
// SID and the secret, so that a new secret for the same change is written too.
func (r *ApiTokenReconciler) writePending(ctx context.Context, at *tokensv1alpha1.ApiToken, pend pendingCredentials) error {
	name := pendingSecretName(at)
	existing, err := r.cachedSecret(ctx, at, name)
	if err != nil {
		return err
	}
	desired := secretOf(at, name, pendingLayout, pend.sid, 0)
	desired.Annotations[credentialsHashAnnotation] = shortHash(pend.key + "\x00" + pend.sid + "\x00" + pend.secret.Reveal())
	desired.Data = map[string][]byte{
		pendingLayout.sidKey: []byte(pend.sid), pendingLayout.tokenKey: []byte(pend.secret.Reveal()), pendingKeyKey: []byte(pend.key),
	}
	if err := controllerutil.SetControllerReference(at, desired, r.Scheme); err != nil {
		return fmt.Errorf("own Secret %s: %w", name, err)
	}
	if err := r.writeSecret(ctx, at, existing, desired); err != nil {
		return fmt.Errorf("write the new secret ahead: %w", err)
	}
	return nil
}

// recoverPending settles a pending Secret that an earlier pass left behind (it
// crashed, or lost an answer, between writing the secret ahead and delivering
// it), before this pass changes anything: a secret of the current token that the
// backend accepts is live, and is delivered by this pass; one it refuses was
// never set (or was replaced since) and is discarded. A pending secret of
// another token (a rotation not recorded yet) is left for the replay of its
// change, which reuses it.
//
// The first token's, while the status records no token yet, is settled here
// too once its client exists: the replay of its create may be a lookup that
// adopts the client (an earlier pass wrote status), which sends no secret, and
// would find the Secret delivered already and deliver nothing, leaving the
// pending Secret behind, a copy of the live secret, with the ApiToken Ready.
func (r *ApiTokenReconciler) recoverPending(ctx context.Context, p *pass) error {
	at := p.at
	pend, ok, err := r.readPending(ctx, at)
	if err != nil || !ok {
		return err
	}
	firstCreate := at.Status.AccountSID == "" && pend.sid == string(at.UID)
	if (pend.sid != at.Status.AccountSID || at.Status.AccountSID == "") && !firstCreate {
		return nil
	}
	if err := r.confirmOwned(ctx, p, pend.sid); err != nil {
		if firstCreate && (errors.Is(err, backend.ErrNotFound) || isForeign(err)) {
			return nil // not made (yet): the replay of its create sees to it
		}
		return err
	}
	live, err := p.be.SecretAccepted(ctx, pend.sid, pend.secret)
	if err != nil {
		return fmt.Errorf("ask whether the secret written ahead for %s is live: %w", pend.sid, err)
	}
	if !live {
		logf.FromContext(ctx).Info("discarded a secret written ahead that the backend does not accept", "sid", pend.sid)
		return r.deleteOwnSecret(ctx, at, pendingSecretName(at))
	}
	tok, _, err := p.be.Get(ctx, pend.sid, "")
	if err != nil {
		return fmt.Errorf("read token %s: %w", pend.sid, err)
	}
	logf.FromContext(ctx).Info("delivering a secret written ahead that the backend accepts", "sid", pend.sid, "generation", tok.Generation)
	p.creds = &backend.Credentials{AccountSID: pend.sid, AuthToken: pend.secret, Generation: tok.Generation}
	return nil
}

// settlePending deletes the pending Secret once the credentials are delivered.
// Without one (the cache says so) it costs nothing. The source Secret, written
// before the Secret, already records the change's key (writeSource), so that a
// replay of the change after a crash between here and the status write finds
// the secret it delivered rather than setting another one, which would change
// the credentials twice for one change and refuse the consumers that hold the
// first.
//
// A pass that delivers new credentials (p.creds: a create, reset or rotation,
// each written ahead) asks the API when the cache does not show the pending
// Secret: this very pass wrote it a moment ago, and the cache may not have seen
// it yet (about one ApiToken in 200 when 500 are created at once). Left behind,
// it would hold a copy of the live secret until the ApiToken's next pass.
func (r *ApiTokenReconciler) settlePending(ctx context.Context, p *pass) error {
	if p.caps.RetrievableSecrets {
		return nil
	}
	find := r.cachedSecret
	if p.creds != nil {
		find = r.getOwnSecret
	}
	head, err := find(ctx, p.at, pendingSecretName(p.at))
	if head == nil || err != nil {
		return ignoreConflict(err)
	}
	return r.deleteOwnSecret(ctx, p.at, head.Name)
}

// ownSource reads the ApiToken's source Secret with its data when its cached
// metadata records the change key (writeSource): nil when there is none, it
// records another change, or it is not the operator's own. The cache answers
// the common case (no source yet, or another change) without a read.
func (r *ApiTokenReconciler) ownSource(ctx context.Context, at *tokensv1alpha1.ApiToken, key string) (*corev1.Secret, error) {
	name := sourceSecretName(at)
	head, err := r.cachedSecret(ctx, at, name)
	if head == nil || err != nil || head.Annotations[writtenAheadForAnnotation] != key {
		return nil, ignoreConflict(err)
	}
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get Secret %s: %w", name, err)
	}
	if !isControlledBy(s, at) || s.Type != sourceSecretType {
		return nil, nil
	}
	return s, nil
}

// deliveredFor returns the secret the source Secret holds for sid when it was
// delivered for the change key (writeSource): ok is false otherwise.
func (r *ApiTokenReconciler) deliveredFor(ctx context.Context, at *tokensv1alpha1.ApiToken, key, sid string) (backend.AuthToken, bool, error) {
	s, err := r.ownSource(ctx, at, key)
	if s == nil || err != nil {
		return "", false, err
	}
	secret := backend.AuthToken(s.Data[sourceLayout.tokenKey])
	if s.Annotations[writtenAheadForAnnotation] != key || string(s.Data[sourceLayout.sidKey]) != sid || !generatedSecret.MatchString(secret.Reveal()) {
		return "", false, nil
	}
	return secret, true, nil
}

// successorFor is the SID of the token that the rotation with the change key
// creates, for a type whose SIDs the operator chooses: the one the pending or
// the source Secret records for the same change (a replay), else the next one
// that no known token of the ApiToken has. A token that an earlier rotation
// made and delivered before its status write was lost, and that a later change
// superseded, is then retired after the overlap like any token the status
// lost (trackKnownTokens), instead of being given the new change's secret,
// which would refuse the consumers that hold its own. The current token is
// never its own successor.
func (r *ApiTokenReconciler) successorFor(ctx context.Context, p *pass, key string) (string, error) {
	current := p.at.Status.AccountSID
	pend, ok, err := r.readPending(ctx, p.at)
	if err != nil {
		return "", err
	}
	if ok && pend.key == key && pend.sid != current {
		return pend.sid, nil
	}
	s, err := r.ownSource(ctx, p.at, key)
	if err != nil {
		return "", err
	}
	if s != nil && s.Annotations[writtenAheadForAnnotation] == key && string(s.Data[sourceLayout.sidKey]) != current {
		return string(s.Data[sourceLayout.sidKey]), nil
	}
	known, _ := r.owned.known(p.at.UID)
	return successorSID(p.at, known...), nil
}
