package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Incident response while an ApiToken is blocked (docs/design.md, "Trust
// boundary": incident response is never blocked). A leaked token must stop
// working now, whatever else is wrong with the ApiToken: a reset, a rotation,
// disabled: true and narrower scopes are carried out on the ApiToken's own token
// even when its namespace lost access to the TokenBackend, the policy was
// tightened, or the backend refuses a value of the spec. Nothing else of the
// spec is applied: the token keeps the settings it has in the backend.

// incidentDue reports whether a blocked ApiToken asks for something incident
// response carries out: a reset or rotation, disabling, or a spec changed since
// the last pass (fewer scopes, perhaps). A blocked ApiToken that asks for
// nothing costs no backend call on its retries.
func incidentDue(at *tokensv1alpha1.ApiToken, now time.Time, blocked error) bool {
	change, due := dueCredentialChange(at, now)
	disable := at.Spec.Disabled && at.Status.State != tokensv1alpha1.TokenState(backend.StateDisabled)
	if isTemplateError(blocked) {
		// The Secret cannot be rendered: only what a user asks for (a reset or
		// rotate annotation, disabling) is carried out; a scheduled rotation
		// waits for the template, and a spec change has nothing to narrow.
		return (due && change.nonce != "") || disable
	}
	return due || disable || at.Generation != at.Status.ObservedGeneration
}

// isTemplateError reports a TemplateError stall.
func isTemplateError(err error) bool {
	var stall *stalledError
	return errors.As(err, &stall) && stall.reason == tokensv1alpha1.ReasonTemplateError
}

// respondToIncident reads the ApiToken's current token in full (which confirms
// that it is the ApiToken's), narrows it as the spec asks (fewer scopes,
// disabled), and carries out a due reset or rotation. A rotation with overlap
// copies the token's settings as they are in the backend, never the blocked
// spec's. It sets the pass's credentials and observed token when anything was
// done.
func (r *ApiTokenReconciler) respondToIncident(ctx context.Context, p *pass, narrowScopes bool) error {
	var err error
	p.creds, p.observed, err = r.narrowOrChange(ctx, p, narrowScopes)
	return err
}

func (r *ApiTokenReconciler) narrowOrChange(ctx context.Context, p *pass, narrowScopes bool) (*backend.Credentials, *backend.Token, error) {
	at, be := p.at, p.be
	sid := at.Status.AccountSID
	observed, _, err := be.Get(ctx, sid, "")
	if errors.Is(err, backend.ErrNotFound) {
		return nil, nil, nil // gone: nothing to respond with until the ApiToken may be applied
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read token %s: %w", sid, err)
	}
	if err := r.checkOwner(at, observed); err != nil {
		has, err := r.rebuildFromOwnTokens(ctx, p, sid)
		if err != nil || !has {
			return nil, nil, err
		}
		observed, _, err = be.Get(ctx, at.Status.AccountSID, "")
		if errors.Is(err, backend.ErrNotFound) {
			return nil, nil, nil // gone meanwhile: as above
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read token %s: %w", at.Status.AccountSID, err)
		}
	}
	desired := desiredToken(at)
	patch := narrowingPatch(desired, observed)
	if !narrowScopes {
		patch.Scopes = nil
	}
	if !patch.IsEmpty() {
		updated, err := be.Update(ctx, observed.SID, observed.ETag, patch)
		if err != nil {
			return nil, nil, fmt.Errorf("update token %s: %w", observed.SID, err)
		}
		if patch.State != nil {
			r.event(at, corev1.EventTypeNormal, "Disabled", "Disabled token %s", observed.SID)
		}
		if patch.Scopes != nil {
			r.event(at, corev1.EventTypeNormal, "Updated", "Removed scopes from token %s", observed.SID)
		}
		observed = updated
	}
	r.recordObserved(at, observed)
	change, due := dueCredentialChange(at, r.Clock.Now())
	if !due {
		return nil, observed, nil
	}
	creds, tok, err := r.changeCredentials(ctx, p, settingsOf(observed, at), change)
	if tok == nil {
		tok = observed
	}
	return creds, tok, err
}

// narrowsScopes reports whether a blocked pass applies fewer scopes: when the
// TokenBackend does not admit the ApiToken (policy, namespace access), not when
// the backend refused a value of the spec (bad input changes nothing).
func narrowsScopes(blocked error) bool {
	var stall *stalledError
	return errors.As(blocked, &stall) && (stall.reason == tokensv1alpha1.ReasonPolicyViolation || stall.reason == tokensv1alpha1.ReasonNamespaceNotAllowed)
}

// narrowingPatch is the part of the spec's changes that only takes access away:
// scopes the token has and the spec dropped, and disabling. It never adds a
// scope nor enables a token.
func narrowingPatch(desired backend.CreateRequest, observed *backend.Token) backend.TokenPatch {
	var patch backend.TokenPatch
	observedScopes := backend.NormalizeSet(observed.Scopes)
	kept := slices.DeleteFunc(slices.Clone(observedScopes), func(s string) bool { return !slices.Contains(desired.Scopes, s) })
	if len(kept) < len(observedScopes) {
		patch.Scopes = &kept
	}
	if desired.State == backend.StateDisabled && observed.State != backend.StateDisabled {
		state := backend.StateDisabled
		patch.State = &state
	}
	return patch
}

// settingsOf is a create request with a token's settings as they are in the
// backend: the successor of a rotation made while the spec is blocked.
func settingsOf(tok *backend.Token, at *tokensv1alpha1.ApiToken) backend.CreateRequest {
	version := tok.APIVersion
	return backend.CreateRequest{
		Name: tok.Name, Description: tok.Description, APIVersion: &version, PrimaryContact: tok.PrimaryContact,
		DeveloperEmails: backend.NormalizeSet(tok.DeveloperEmails), Scopes: backend.NormalizeSet(tok.Scopes), State: tok.State,
		ExternalID: string(at.UID),
	}
}

// isStall reports an error that retrying cannot cure (the user must act).
// It sorts as stallOrWait does.
func isStall(err error) bool {
	var stall *stalledError
	return errors.As(err, &stall) || errors.As(err, new(secretConflictError)) ||
		(errors.Is(err, backend.ErrInvalid) && errors.As(err, new(*backend.APIError)))
}
