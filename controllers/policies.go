package controllers

import (
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strings"
	"time"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The decisions of the ApiToken controller: pure functions of the spec and of what
// the backend said, table-tested in policies_test.go.

// desiredToken is the backend token that the spec declares.
func desiredToken(at *tokensv1alpha1.ApiToken) backend.CreateRequest {
	req := backend.CreateRequest{
		Name:            at.Spec.DisplayName,
		Description:     at.Spec.Description,
		PrimaryContact:  at.Spec.PrimaryContact,
		DeveloperEmails: backend.NormalizeSet(at.Spec.DeveloperEmails),
		Scopes:          backend.NormalizeSet(at.Spec.Scopes),
		State:           backend.StateEnabled,
		ExternalID:      string(at.UID),
	}
	if req.Name == "" {
		req.Name = at.Name
	}
	if at.Spec.APIVersion != nil {
		v := int(*at.Spec.APIVersion)
		req.APIVersion = &v
	}
	if at.Spec.Disabled {
		req.State = backend.StateDisabled
	}
	return req
}

// tokenPatch returns the changes that bring the observed token to the desired one,
// and the names of the changed fields that had widened access in the backend
// (extra scopes, or enabled where the spec says disabled).
func tokenPatch(desired backend.CreateRequest, observed *backend.Token) (patch backend.TokenPatch, widened []string) {
	if observed.Name != desired.Name {
		patch.Name = &desired.Name
	}
	if observed.Description != desired.Description {
		patch.Description = &desired.Description
	}
	// An omitted apiVersion means "the backend's latest at creation"; the token is
	// not moved after that. A declared one may only rise, which admission enforces.
	if desired.APIVersion != nil && *desired.APIVersion > observed.APIVersion {
		patch.APIVersion = desired.APIVersion
	}
	if observed.PrimaryContact != desired.PrimaryContact {
		patch.PrimaryContact = &desired.PrimaryContact
	}
	if !slices.Equal(backend.NormalizeSet(observed.DeveloperEmails), desired.DeveloperEmails) {
		emails := desired.DeveloperEmails
		patch.DeveloperEmails = &emails
	}
	if observedScopes := backend.NormalizeSet(observed.Scopes); !slices.Equal(observedScopes, desired.Scopes) {
		scopes := desired.Scopes
		patch.Scopes = &scopes
		if slices.ContainsFunc(observedScopes, func(s string) bool { return !slices.Contains(desired.Scopes, s) }) {
			widened = append(widened, "scopes")
		}
	}
	if observed.State != desired.State {
		patch.State = &desired.State
		if observed.State == backend.StateEnabled {
			widened = append(widened, "state")
		}
	}
	return patch, widened
}

// patchedFields names the fields a patch changes, for events.
func patchedFields(p backend.TokenPatch) []string {
	var out []string
	add := func(set bool, name string) {
		if set {
			out = append(out, name)
		}
	}
	add(p.Name != nil, "name")
	add(p.Description != nil, "description")
	add(p.APIVersion != nil, "apiVersion")
	add(p.PrimaryContact != nil, "primaryContact")
	add(p.DeveloperEmails != nil, "developerEmails")
	add(p.Scopes != nil, "scopes")
	add(p.State != nil, "state")
	return out
}

// specUnconfirmed reports whether the backend token has not yet been checked
// against this spec: the spec changed since the last pass that set conditions,
// or that pass did not end Ready. A difference found in the backend is then the
// spec's doing, not drift.
func specUnconfirmed(at *tokensv1alpha1.ApiToken) bool {
	return at.Generation != at.Status.ObservedGeneration || !isReady(at.Status.Conditions)
}

// backendReadDue reports whether a pass must read the backend token rather than
// trust the status. lastRead is when this process last read it, zero when it has
// not since it started: after a restart every token is read once (a conditional
// read, answered 304 when nothing changed), and events that do not concern the
// backend (the operator's own Secret writes, restarted watches) cost no call.
// specConfirmed reports that this process has seen the backend token match the
// spec's backend fields as they are now: a new generation that changed only
// what the backend does not hold (the Secret's name, template or restart
// targets) then costs no read either. A pass is woken no earlier than the read
// is due (nextWake), so there is no margin: one would let a restart's first pass
// read every token whose first-read slot falls within it, a burst of them at once.
func backendReadDue(at *tokensv1alpha1.ApiToken, lastRead, now time.Time, resync time.Duration, specConfirmed bool) bool {
	switch {
	case !isReady(at.Status.Conditions):
		return true
	case at.Generation != at.Status.ObservedGeneration && !specConfirmed:
		return true
	case lastRead.IsZero():
		return true
	}
	return now.Sub(lastRead) >= resync
}

// specDigest fingerprints the spec's backend fields, what the backend token
// must match.
func specDigest(at *tokensv1alpha1.ApiToken) specSum {
	doc, _ := json.Marshal(desiredToken(at))
	sum := sha256.Sum256(doc)
	return specSum(sum[:16])
}

// specSum is a digest of the backend fields of a spec (specDigest); the zero
// value is none. Kept per token by the read schedule, as an array: no string of
// its own on the heap for every cached token.
type specSum [16]byte

// resetDue reports whether the reset annotation asks for a reset that has not been
// handled: a non-empty value that differs from the last handled one. Removing the
// annotation does nothing.
func resetDue(annotation, lastHandled string) bool {
	return annotation != "" && annotation != lastHandled
}

func joinFields(fields []string) string { return strings.Join(fields, ", ") }
