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

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionPolicy says what deleting an ApiToken does to its backend token.
// +kubebuilder:validation:Enum=Delete;Disable;Orphan
type DeletionPolicy string

const (
	// DeletionPolicyDelete deletes the backend token and the Secret.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyDisable disables the backend token and deletes the Secret.
	DeletionPolicyDisable DeletionPolicy = "Disable"
	// DeletionPolicyOrphan leaves the backend token and keeps the Secret, without its owner reference.
	DeletionPolicyOrphan DeletionPolicy = "Orphan"
)

// TokenState is the state of a backend token.
// +kubebuilder:validation:Enum=Enabled;Disabled
type TokenState string

const (
	// TokenStateEnabled accepts requests made with the token.
	TokenStateEnabled TokenState = "Enabled"
	// TokenStateDisabled rejects every request made with the token.
	TokenStateDisabled TokenState = "Disabled"
)

// LabelValue is a valid Kubernetes label value.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
type LabelValue string

// RestartTargetKind is a kind of workload whose pods are rolled when the
// credentials change.
// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
type RestartTargetKind string

const (
	RestartTargetDeployment  RestartTargetKind = "Deployment"
	RestartTargetStatefulSet RestartTargetKind = "StatefulSet"
	RestartTargetDaemonSet   RestartTargetKind = "DaemonSet"
)

// RestartTarget names a workload in the ApiToken's namespace.
type RestartTarget struct {
	// kind of the workload: Deployment, StatefulSet or DaemonSet (group apps).
	// +required
	Kind RestartTargetKind `json:"kind"`

	// name of the workload.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`
}

// Adoption names an existing backend token to take over.
type Adoption struct {
	// accountSid of the backend token (made by hand, e.g. in the platform's web
	// UI) that this ApiToken takes over without a reset: the operator claims it
	// (sets its externalId to the ApiToken's UID), applies the spec, and writes its
	// current credentials to the Secret. Immutable. Letters, digits, '-' and '_',
	// starting with a letter or digit.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_]*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="adopt.accountSid is immutable"
	// +required
	AccountSID string `json:"accountSid"`
}

// RotationPolicy says when and how the credentials are rotated.
type RotationPolicy struct {
	// period rotates the credentials automatically when they are this old
	// (counted from status.credentialsIssuedAt). At least 1h. Omitted: no
	// scheduled rotation.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="rotation.period must be at least 1h"
	// +optional
	Period *metav1.Duration `json:"period,omitempty"`

	// overlap is how long the old credentials stay valid after a rotation. 0s
	// (the default) rotates in place: a reset, which revokes the old auth token at
	// once. Greater than 0 (at most 168h) creates a new backend token with the same
	// settings, switches the Secret to it, rolls the restart targets, and deletes
	// the old token overlap after the switch: consumers are never refused.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('168h')",message="rotation.overlap must be between 0s and 168h"
	// +optional
	Overlap *metav1.Duration `json:"overlap,omitempty"`
}

// BackendReference names a cluster-scoped TokenBackend.
type BackendReference struct {
	// name of the TokenBackend.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`
}

// SecretTemplate says where and how the token's credentials are written.
// +kubebuilder:validation:XValidation:rule="(has(self.accountSidKey) ? self.accountSidKey : 'accountSid') != (has(self.authTokenKey) ? self.authTokenKey : 'authToken')",message="accountSidKey and authTokenKey must differ"
// +kubebuilder:validation:XValidation:rule="!has(self.template) || !has(self.template.data) || !has(self.formats) || self.formats.all(f, !((f == 'Env' ? '.env' : (f == 'Netrc' ? '.netrc' : 'credentials.json')) in self.template.data))",message="secret.template.data must not name a key that secret.formats writes (.env, .netrc, credentials.json)"
// +kubebuilder:validation:XValidation:rule="!has(self.template) || !has(self.template.data) || !has(self.template.keep) || self.template.keep.all(k, !((k == 'accountSid' ? (has(self.accountSidKey) ? self.accountSidKey : 'accountSid') : (has(self.authTokenKey) ? self.authTokenKey : 'authToken')) in self.template.data))",message="secret.template.data must not name a key that secret.template.keep keeps"
// +kubebuilder:validation:XValidation:rule="!has(self.template) || !has(self.template.data) || !has(self.type) || self.type != 'kubernetes.io/basic-auth' || !('username' in self.template.data || 'password' in self.template.data)",message="secret.template.data must not name username or password: a kubernetes.io/basic-auth Secret keeps them"
// +kubebuilder:validation:XValidation:rule="!has(self.formats) || self.formats.all(f, !((f == 'Env' ? '.env' : (f == 'Netrc' ? '.netrc' : 'credentials.json')) in [has(self.accountSidKey) ? self.accountSidKey : 'accountSid', has(self.authTokenKey) ? self.authTokenKey : 'authToken']))",message="accountSidKey and authTokenKey must not name a key that secret.formats writes (.env, .netrc, credentials.json)"
type SecretTemplate struct {
	// name of the Secret, in the ApiToken's namespace. Defaults to the ApiToken's name.
	// Changing it moves the Secret.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Name string `json:"name,omitempty"`

	// type of the Secret: Opaque (keys accountSidKey and authTokenKey) or
	// kubernetes.io/basic-auth (username = account SID, password = auth token).
	// +kubebuilder:validation:Enum=Opaque;kubernetes.io/basic-auth
	// +kubebuilder:default=Opaque
	// +optional
	Type corev1.SecretType `json:"type,omitempty"`

	// accountSidKey is the data key of the account SID in an Opaque Secret.
	// Default: accountSid, or clientId for an OAuth2 backend (Hydra).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	AccountSIDKey string `json:"accountSidKey,omitempty"`

	// authTokenKey is the data key of the auth token in an Opaque Secret.
	// Default: authToken, or clientSecret for an OAuth2 backend (Hydra).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	AuthTokenKey string `json:"authTokenKey,omitempty"`

	// labels are copied onto the Secret, beside the operator's own. Keys and values
	// must be valid Kubernetes label keys and values.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 317 && k.split('/')[k.split('/').size() - 1].size() <= 63 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="secret.labels: every key must be a valid label key ([prefix/]name, name at most 63 characters of alphanumerics, '-', '_' and '.')"
	// +optional
	Labels map[string]LabelValue `json:"labels,omitempty"`

	// annotations are copied onto the Secret. Keys must be valid annotation keys.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 317 && k.split('/')[k.split('/').size() - 1].size() <= 63 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="secret.annotations: every key must be a valid annotation key ([prefix/]name, name at most 63 characters of alphanumerics, '-', '_' and '.')"
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// template renders the Secret's data from Go text/templates, for consumers
	// that want a connection string, a file or the key names their chart already
	// expects. Without it the Secret holds the two default keys.
	// +optional
	Template *SecretDataTemplate `json:"template,omitempty"`

	// formats adds ready-made keys beside the others: Env writes .env
	// (ACCOUNT_SID, AUTH_TOKEN, API_BASE_URL), Netrc writes .netrc (machine
	// <backend host> login <sid> password <token>), JSON writes credentials.json
	// (accountSid, authToken, apiVersion, scopes, backendUrl).
	// +kubebuilder:validation:MaxItems=3
	// +listType=set
	// +optional
	Formats []SecretFormat `json:"formats,omitempty"`

	// restartTargets are workloads in the ApiToken's namespace whose pods are
	// rolled when the credentials change (reset, rotation, recreation) or a
	// templated Secret is rendered anew: their pod template gets the annotation
	// tokens.apitoken.dev/credentials: <sid>/<generation>, followed for a templated
	// Secret by /<the first 8 hex digits of its template digest>.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +optional
	RestartTargets []RestartTarget `json:"restartTargets,omitempty"`
}

// SecretDataTemplate renders the Secret's data.
type SecretDataTemplate struct {
	// data maps each data key of the Secret to a Go text/template. A template sees
	// .AccountSID, .AuthToken, .Scopes, .APIVersion, .BackendURL and, for OAuth2
	// backends, .TokenURL, and may call the functions listed in the README (string,
	// list, encoding and hashing functions; nothing that reads the environment,
	// files, the network, the clock or randomness). Each key renders at most 64 KiB,
	// all of them together at most 256 KiB.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && !k.startsWith('..'))",message="secret.template.data: every key must be a valid Secret data key (at most 253 of alphanumerics, '-', '_' and '.'; not '.' and not starting with '..')"
	// +kubebuilder:validation:XValidation:rule="self.all(k, self[k].size() <= 16384)",message="secret.template.data: every template must be at most 16384 characters"
	// +optional
	Data map[string]string `json:"data,omitempty"`

	// keep lists the default keys written beside the templated ones: accountSid
	// (at accountSidKey) and authToken (at authTokenKey). By default none is kept
	// when data is set. A kubernetes.io/basic-auth Secret always keeps username
	// and password, which its type requires.
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	Keep []KeptKey `json:"keep,omitempty"`
}

// SecretFormat is a ready-made layout of the credentials.
// +kubebuilder:validation:Enum=Env;Netrc;JSON
type SecretFormat string

// Ready-made formats.
const (
	SecretFormatEnv   SecretFormat = "Env"
	SecretFormatNetrc SecretFormat = "Netrc"
	SecretFormatJSON  SecretFormat = "JSON"
)

// Key is the data key a format writes.
func (f SecretFormat) Key() string {
	switch f {
	case SecretFormatEnv:
		return ".env"
	case SecretFormatNetrc:
		return ".netrc"
	case SecretFormatJSON:
		return "credentials.json"
	}
	return ""
}

// KeptKey names a default key of the Secret.
// +kubebuilder:validation:Enum=accountSid;authToken
type KeptKey string

// Default keys a template may keep.
const (
	KeepAccountSID KeptKey = "accountSid"
	KeepAuthToken  KeptKey = "authToken"
)

// The data keys of the account SID and the auth token in an Opaque Secret when
// the template leaves them unset. The +kubebuilder:default markers of
// accountSidKey and authTokenKey say the same; a marker cannot name a constant.
const (
	DefaultAccountSIDKey = "accountSid"
	DefaultAuthTokenKey  = "authToken"
	// The defaults for an OAuth2 backend (Hydra): the client ID and secret, and
	// the key of the token endpoint written beside them.
	DefaultClientIDKey     = "clientId"
	DefaultClientSecretKey = "clientSecret"
	DefaultTokenURLKey     = "tokenUrl"
)

// KeyNames are the data keys of the account SID and the auth token in a Secret
// written for this template: username and password for kubernetes.io/basic-auth,
// else accountSidKey and authTokenKey. An unset key means its default, so that a
// template the API server has not defaulted (built in code, or stored before a
// default existed) names the same keys.
func (s *SecretTemplate) KeyNames() (sidKey, tokenKey string) {
	return s.KeyNamesFor(false)
}

// KeyNamesFor is KeyNames for a Secret of an OAuth2 backend (Hydra) when oauth2
// is set: its unset keys default to clientId and clientSecret.
func (s *SecretTemplate) KeyNamesFor(oauth2 bool) (sidKey, tokenKey string) {
	if s.Type == corev1.SecretTypeBasicAuth {
		return corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey
	}
	sidKey, tokenKey = s.AccountSIDKey, s.AuthTokenKey
	defaultSID, defaultToken := DefaultAccountSIDKey, DefaultAuthTokenKey
	if oauth2 {
		defaultSID, defaultToken = DefaultClientIDKey, DefaultClientSecretKey
	}
	if sidKey == "" {
		sidKey = defaultSID
	}
	if tokenKey == "" {
		tokenKey = defaultToken
	}
	return sidKey, tokenKey
}

// ApiTokenSpec declares a token in a token backend and the Secret that receives
// its credentials.
type ApiTokenSpec struct {
	// backendRef names the TokenBackend that holds the token.
	// +kubebuilder:default={name: default}
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="backendRef is immutable: to move a token to another TokenBackend, create a new ApiToken (and delete this one)"
	BackendRef BackendReference `json:"backendRef,omitempty"`

	// displayName is the token's name in the backend. Defaults to metadata.name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=100
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// description of the token, shown in the backend.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// apiVersion of the backend API that the token uses. Defaults to the backend's
	// latest. It may only rise: a token cannot be moved to an older API version.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +kubebuilder:validation:XValidation:rule="self >= oldSelf",message="apiVersion may only rise"
	// +optional
	APIVersion *int32 `json:"apiVersion,omitempty"`

	// primaryContact is the e-mail of the account user responsible for the token.
	// It must be a user of the backend account.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Format=email
	// +required
	PrimaryContact string `json:"primaryContact"`

	// developerEmails are told about changes to the token (a set).
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=254
	// +kubebuilder:validation:items:Format=email
	// +listType=set
	// +optional
	DeveloperEmails []string `json:"developerEmails,omitempty"`

	// scopes the token holds, as <category>:<permission> (a set). Empty grants no access.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9-]+:[a-z0-9-]+$`
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// disabled disables the token in the backend: its credentials are rejected at
	// once. The Secret is kept, so that setting it back to false restores service
	// with the same credentials.
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// deletionPolicy says what deleting the ApiToken does: Delete removes the backend
	// token and the Secret; Disable disables the token and removes the Secret;
	// Orphan leaves both (the Secret loses its owner reference).
	// +kubebuilder:default=Delete
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// secret says where the credentials go.
	// +kubebuilder:default={}
	// +optional
	Secret SecretTemplate `json:"secret,omitempty"`

	// rotation schedules credential rotation and says whether old credentials
	// overlap with new ones. The tokens.apitoken.dev/rotate annotation rotates now.
	// +optional
	Rotation RotationPolicy `json:"rotation,omitempty"`

	// adopt takes over an existing backend token instead of creating one. It
	// matters only until the ApiToken owns a token. Allowed where the
	// TokenBackend's spec.policy.adoptionNamespaces selects the namespace.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="adopt is immutable"
	// +optional
	Adopt *Adoption `json:"adopt,omitempty"`
}

// CredentialChangeType is the kind of a credential change in status.history.
// +kubebuilder:validation:Enum=Created;Adopted;Reset;Rotated;Recreated
type CredentialChangeType string

const (
	// CredentialsCreated: the backend token was created.
	CredentialsCreated CredentialChangeType = "Created"
	// CredentialsAdopted: an existing backend token was taken over.
	CredentialsAdopted CredentialChangeType = "Adopted"
	// CredentialsReset: the auth token was reset for the reset annotation.
	CredentialsReset CredentialChangeType = "Reset"
	// CredentialsRotated: the credentials were rotated (schedule or annotation).
	CredentialsRotated CredentialChangeType = "Rotated"
	// CredentialsRecreated: the backend token vanished and was made again.
	CredentialsRecreated CredentialChangeType = "Recreated"
)

// CredentialChange is one entry of status.history. It never holds a secret.
type CredentialChange struct {
	// type of the change.
	// +required
	Type CredentialChangeType `json:"type"`

	// nonce is the annotation value that asked for the change (reset or rotate).
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Nonce string `json:"nonce,omitempty"`

	// time of the change.
	// +required
	Time metav1.Time `json:"time"`

	// accountSid of the token that holds the new credentials.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_]*$`
	// +required
	AccountSID string `json:"accountSid"`

	// generation of the new credentials in the backend.
	// +required
	Generation int64 `json:"generation"`
}

// RetiringToken is an old backend token kept valid during a rotation overlap.
type RetiringToken struct {
	// accountSid of the old token.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_]*$`
	// +required
	AccountSID string `json:"accountSid"`

	// deleteAfter is when the old token is deleted.
	// +required
	DeleteAfter metav1.Time `json:"deleteAfter"`
}

// ApiTokenStatus is the observed state of an ApiToken. It never holds the auth token.
type ApiTokenStatus struct {
	// observedGeneration is the metadata.generation that the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Reconciling and Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// accountSid identifies the backend token. It is not secret.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_]*$`
	// +optional
	AccountSID string `json:"accountSid,omitempty"`

	// apiVersion is the token's effective API version.
	// +optional
	APIVersion int32 `json:"apiVersion,omitempty"`

	// state of the backend token.
	// +optional
	State TokenState `json:"state,omitempty"`

	// secretName is the Secret that holds the credentials.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// secretDigest fingerprints what, besides the credentials, the Secret's
	// templated data was last rendered from and delivered to the restart targets
	// with: spec.secret.template, spec.secret.formats, the scopes, the API version
	// and the backend URL. Empty without a template or formats. When it changes,
	// the Secret is rendered again (without a backend call) and each restart
	// target is rolled once.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	SecretDigest string `json:"secretDigest,omitempty"`

	// lastHandledReset is the last value of the tokens.apitoken.dev/reset annotation
	// that was acted on.
	// +optional
	LastHandledReset string `json:"lastHandledReset,omitempty"`

	// lastResetTime is when the token was last reset.
	// +optional
	LastResetTime *metav1.Time `json:"lastResetTime,omitempty"`

	// backendETag is the version of the backend token last seen, for conditional reads.
	// +optional
	BackendETag string `json:"backendETag,omitempty"`

	// credentialsIssuedAt is when the current credentials were issued.
	// +optional
	CredentialsIssuedAt *metav1.Time `json:"credentialsIssuedAt,omitempty"`

	// nextRotationTime is when the credentials are rotated next
	// (credentialsIssuedAt + spec.rotation.period), when a period is set.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// lastHandledRotate is the last value of the tokens.apitoken.dev/rotate
	// annotation that was acted on.
	// +optional
	LastHandledRotate string `json:"lastHandledRotate,omitempty"`

	// retiringTokens are old backend tokens still valid during a rotation overlap,
	// each deleted at its deleteAfter.
	// +kubebuilder:validation:MaxItems=32
	// +optional
	RetiringTokens []RetiringToken `json:"retiringTokens,omitempty"`

	// history lists the last 10 credential changes, newest first. A reset or rotate
	// nonce found here never acts again.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	History []CredentialChange `json:"history,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apit,categories=apitoken-operator
// +kubebuilder:printcolumn:name="SID",type=string,JSONPath=`.status.accountSid`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Version",type=integer,JSONPath=`.status.apiVersion`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name must be at most 63 characters: it is the value of the Secret's label tokens.apitoken.dev/apitoken"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.spec.adopt) || (has(self.spec.adopt) && self.spec.adopt == oldSelf.spec.adopt) || (has(oldSelf.status) && has(oldSelf.status.accountSid) && oldSelf.status.accountSid != '')",message="spec.adopt cannot be removed or changed until the ApiToken owns a token (status.accountSid)"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.apiVersion) || (has(oldSelf.spec.apiVersion) && self.spec.apiVersion == oldSelf.spec.apiVersion) || !has(oldSelf.status) || !has(oldSelf.status.apiVersion) || self.spec.apiVersion >= oldSelf.status.apiVersion",message="spec.apiVersion may not be below the token's effective API version (status.apiVersion): a token cannot be moved to an older API version"

// ApiToken is an API access token in a token backend, declared in Kubernetes. The
// operator keeps the backend token as declared and writes its account SID and auth
// token into a Secret. Change the tokens.apitoken.dev/reset annotation to reset it.
//
// The name is also the value of the Secret's label tokens.apitoken.dev/apitoken,
// hence at most 63 characters. spec.apiVersion may not be set below the token's
// effective version (status.apiVersion), also when it is set for the first time
// or again after its removal: the backend cannot downgrade a token. spec.adopt
// cannot be removed or changed until the ApiToken owns a token
// (status.accountSid): until then it is what decides which token it gets.
type ApiToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the token.
	// +required
	Spec ApiTokenSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status ApiTokenStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ApiTokenList contains a list of ApiToken.
type ApiTokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApiToken `json:"items"`
}
