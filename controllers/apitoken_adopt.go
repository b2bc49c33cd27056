package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// adoptExisting takes over the backend token named by spec.adopt without a reset:
// it claims the token (sets its externalId to the ApiToken's UID, conditionally
// on the version read, so that of two ApiTokens adopting one token exactly one
// wins), applies the spec, and returns its current credentials. A crash between
// the claim and the status write is finished by the next pass, which finds the
// token claimed by this ApiToken already. Nothing is changed when adoption is not
// allowed, the token is not found, or another owner holds it.
func (r *ApiTokenReconciler) adoptExisting(ctx context.Context, p *pass, desired backend.CreateRequest) (*backend.Credentials, *backend.Token, error) {
	at := p.at
	sid := at.Spec.Adopt.AccountSID
	if err := r.checkAdoptionAllowed(ctx, p); err != nil {
		return nil, nil, err
	}
	// A Secret name held by someone else stops the adoption before the claim.
	if _, err := r.getOwnSecret(ctx, at, secretName(at)); err != nil {
		return nil, nil, err
	}
	tok, err := r.claim(ctx, p, sid)
	if err != nil {
		return nil, nil, err
	}
	creds, err := r.adoptedCredentials(ctx, p, sid)
	if err != nil {
		return nil, nil, err
	}
	r.recordToken(p, tok, "")
	r.recordCredentials(at, tokensv1alpha1.CredentialsAdopted, "", sid, creds.Generation)
	updated, err := r.updateToken(ctx, p, desired, tok)
	if err != nil {
		return nil, nil, err
	}
	return &creds, updated, nil
}

// adoptedCredentials are the credentials of an adopted token: as they are, from
// a backend that returns them; else (Hydra never returns a secret) a new secret,
// written ahead and set under the adoption's own key, so that a crash replays
// it rather than setting yet another one.
func (r *ApiTokenReconciler) adoptedCredentials(ctx context.Context, p *pass, sid string) (backend.Credentials, error) {
	if !p.caps.RetrievableSecrets {
		creds, err := p.be.Reset(ctx, sid, adoptKey(p.at), "")
		if err != nil {
			return backend.Credentials{}, fmt.Errorf("set a secret for adopted token %s: %w", sid, err)
		}
		r.event(p.at, corev1.EventTypeNormal, "Adopted", "Adopted token %s with a new secret: the backend never returns the one it had", sid)
		return creds, nil
	}
	creds, err := p.be.Credentials(ctx, sid)
	if err != nil {
		return backend.Credentials{}, fmt.Errorf("read credentials of %s: %w", sid, err)
	}
	r.event(p.at, corev1.EventTypeNormal, "Adopted", "Adopted token %s without a reset", sid)
	return creds, nil
}

// claim sets the token's externalId to the ApiToken's UID unless it holds it
// already. A token of another owner, or none, is an AdoptionConflict.
func (r *ApiTokenReconciler) claim(ctx context.Context, p *pass, sid string) (*backend.Token, error) {
	at, be := p.at, p.be
	tok, _, err := be.Get(ctx, sid, "")
	if errors.Is(err, backend.ErrNotFound) {
		return nil, stalled(tokensv1alpha1.ReasonAdoptionConflict, "Token %s to adopt does not exist in TokenBackend %q", sid, backendName(at))
	}
	if err != nil {
		return nil, fmt.Errorf("read token %s to adopt: %w", sid, err)
	}
	uid := string(at.UID)
	switch tok.ExternalID {
	case uid:
		return tok, nil // claimed by an earlier pass that did not get to record it
	case "":
	default:
		return nil, stalled(tokensv1alpha1.ReasonAdoptionConflict, "Token %s is managed by another owner; it was left as it is", sid)
	}
	claimed, err := be.Update(ctx, sid, tok.ETag, backend.TokenPatch{ExternalID: &uid})
	switch {
	case errors.Is(err, backend.ErrConflict):
		return nil, stalled(tokensv1alpha1.ReasonAdoptionConflict, "Token %s is managed by another owner; it was left as it is", sid)
	case err != nil:
		// A stale version (412): someone else changed or claimed it meanwhile; the
		// retry reads it again and sees which.
		return nil, fmt.Errorf("claim token %s: %w", sid, err)
	}
	return claimed, nil
}

// checkAdoptionAllowed refuses an adoption unless the TokenBackend's
// spec.policy.adoptionNamespaces selects the ApiToken's namespace.
func (r *ApiTokenReconciler) checkAdoptionAllowed(ctx context.Context, p *pass) error {
	at, tb, name := p.at, p.tb, p.tb.Name
	refused := stalled(tokensv1alpha1.ReasonAdoptionNotAllowed, "TokenBackend %q does not allow adoption in namespace %q (spec.policy.adoptionNamespaces)", name, at.Namespace)
	if tb.Spec.Policy == nil || tb.Spec.Policy.AdoptionNamespaces == nil {
		return refused
	}
	selector, err := metav1.LabelSelectorAsSelector(tb.Spec.Policy.AdoptionNamespaces)
	if err != nil {
		return refused
	}
	matches, err := r.namespaceMatches(ctx, at.Namespace, selector)
	if err != nil {
		return err
	}
	if !matches {
		return refused
	}
	return nil
}
