/*
Copyright 2026 The apitoken-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

// Condition types, compatible with kstatus: Ready is True when the object is as
// declared; Reconciling is True while work is in progress; Stalled is True when the
// operator cannot make progress without a change from the user.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
	// ConditionPaused is True while the tokens.apitoken.dev/paused annotation
	// holds the operator off the ApiToken.
	ConditionPaused = "Paused"
)

// Condition reasons.
const (
	ReasonReady               = "Ready"
	ReasonProgressing         = "Progressing"
	ReasonBackendNotFound     = "BackendNotFound"
	ReasonBackendNotReady     = "BackendNotReady"
	ReasonBackendUnavailable  = "BackendUnavailable"
	ReasonBackendThrottled    = "BackendThrottled"
	ReasonBackendRejected     = "BackendRejected"
	ReasonBackendUnauthorized = "BackendUnauthorized"
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	ReasonSecretConflict      = "SecretConflict"
	ReasonSecretRejected      = "SecretRejected"
	ReasonPaused              = "Paused"
	ReasonResumed             = "Resumed"
	ReasonAdoptionNotAllowed  = "AdoptionNotAllowed"
	ReasonAdoptionConflict    = "AdoptionConflict"
	ReasonCredentialsInvalid  = "CredentialsInvalid"
	ReasonCatalogFetched      = "CatalogFetched"
	// ReasonBackendConnected: a backend type without a catalog (Hydra) answered.
	ReasonBackendConnected = "Connected"
	// ReasonInsecureURL: a TokenBackend's url is plain http:// to a host that is
	// not loopback and spec.allowInsecureHTTP is not set; no request is made.
	ReasonInsecureURL = "InsecureURL"
	// ReasonPolicyViolation: the spec asks for what the TokenBackend's catalog or
	// policy does not allow; nothing is created or changed in the backend.
	ReasonPolicyViolation = "PolicyViolation"
	// ReasonForeignToken (a Warning event): the status named a backend token whose
	// externalId is not the ApiToken's UID; it was never used, and the status was
	// rebuilt from a lookup by externalId.
	ReasonForeignToken = "ForeignToken"
	// ReasonRotationDeferred (Reconciling): a rotation with overlap waits because
	// the ApiToken already has the most retiring tokens it may keep (8).
	ReasonRotationDeferred = "RotationDeferred"
	// ReasonRestartTargetNotConsumer (a Warning event): a restart target's pod
	// template does not use the ApiToken's Secret, so it was not rolled.
	ReasonRestartTargetNotConsumer = "RestartTargetNotConsumer"
	// ReasonTemplateError (Stalled): spec.secret.template or formats cannot be
	// rendered; the Secret is left as it was.
	ReasonTemplateError = "TemplateError"
)

// Well-known names.
const (
	// Finalizer holds an ApiToken until its deletion policy has been carried out.
	Finalizer = "tokens.apitoken.dev/finalizer"
	// ResetAnnotation requests a reset: each new, non-empty value resets the token once.
	ResetAnnotation = "tokens.apitoken.dev/reset"
	// RotateAnnotation requests a rotation the way spec.rotation says: each new,
	// non-empty value rotates the credentials once.
	RotateAnnotation = "tokens.apitoken.dev/rotate"
	// PausedAnnotation "true" makes the operator leave the ApiToken alone: no
	// backend calls and no writes but the Paused condition.
	PausedAnnotation = "tokens.apitoken.dev/paused"
	// CredentialsAnnotation on a restart target's pod template names the
	// credentials its pods were started with: <accountSid>/<generation>.
	CredentialsAnnotation = "tokens.apitoken.dev/credentials"
	// ApiTokenLabel on a Secret names the ApiToken that owns it.
	ApiTokenLabel = "tokens.apitoken.dev/apitoken"
	// InternalSecretLabel marks the operator's own Secrets that no workload
	// mounts: "source" (the credentials as the backend issued them) and
	// "pending" (a secret written ahead of the backend call).
	InternalSecretLabel = "tokens.apitoken.dev/internal"
	// ManagedByLabel and ManagedByValue mark every Secret that the operator writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "apitoken-operator"
	// DefaultBackendName is the TokenBackend used when spec.backendRef is omitted.
	DefaultBackendName = "default"
)
