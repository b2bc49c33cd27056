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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretKeyReference selects a key of a Secret in a given namespace.
type SecretKeyReference struct {
	// namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// key in the Secret's data.
	// +kubebuilder:default=apiKey
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// RateLimit bounds the calls the operator makes to a backend.
type RateLimit struct {
	// qps is the sustained number of calls per second.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	QPS int32 `json:"qps,omitempty"`
	// burst is the number of calls allowed at once above qps.
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	Burst int32 `json:"burst,omitempty"`
}

// TokenBackendSpec is one account of a Token Service.
// +kubebuilder:validation:XValidation:rule="self.type != 'TokenService' || has(self.credentialsSecretRef)",message="credentialsSecretRef is required for type TokenService"
// +kubebuilder:validation:XValidation:rule="self.type == 'Hydra' ? has(self.hydra) : !has(self.hydra)",message="hydra is required for type Hydra, and only for it"
// +kubebuilder:validation:XValidation:rule="oldSelf.type == self.type",message="type cannot be changed: the tokens of one type mean nothing to another"
type TokenBackendSpec struct {
	// type is the kind of backend: TokenService (the Token Service API v1) or
	// Hydra (Ory Hydra's OAuth2 clients, see docs/backends.md).
	// +kubebuilder:validation:Enum=TokenService;Hydra
	// +kubebuilder:default=TokenService
	// +optional
	Type BackendType `json:"type,omitempty"`

	// url of the backend's management API: the Token Service API, e.g.
	// https://tokens.example.com, or Hydra's admin API, e.g.
	// http://hydra-admin.auth:4445. Plain http is meant for loopback and tests.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/]+(/.*)?$`
	// +required
	URL string `json:"url"`

	// credentialsSecretRef selects the admin key of the account: required for a
	// Token Service; for Hydra, optional, sent as a bearer token (for an admin API
	// behind an authenticating proxy).
	// +optional
	CredentialsSecretRef *SecretKeyReference `json:"credentialsSecretRef,omitempty"`

	// hydra holds the settings of a Hydra backend.
	// +optional
	Hydra *HydraSettings `json:"hydra,omitempty"`

	// caBundle is PEM certificates to trust for the backend's TLS, instead of the
	// system roots.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	CABundle string `json:"caBundle,omitempty"`

	// allowedNamespaces selects the namespaces whose ApiTokens may use this backend.
	// Omitted: all namespaces.
	// +optional
	AllowedNamespaces *metav1.LabelSelector `json:"allowedNamespaces,omitempty"`

	// rateLimit bounds the operator's calls to this backend.
	// +kubebuilder:default={qps: 10, burst: 20}
	// +optional
	RateLimit RateLimit `json:"rateLimit,omitempty"`

	// resyncInterval is how often each token is checked for drift made in the
	// backend (one conditional read per token), with up to 10% jitter. At least 5s.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5s')",message="resyncInterval must be at least 5s"
	// +optional
	ResyncInterval *metav1.Duration `json:"resyncInterval,omitempty"`

	// policy limits what the ApiTokens using this backend may ask for, within what
	// the account offers (status.catalog). Enforced when an ApiToken is admitted
	// (the ValidatingAdmissionPolicy apitoken-policy) and when it is reconciled.
	// Omitted: everything in the catalog, with any deletion policy, and no adoption.
	// +optional
	Policy *TokenBackendPolicy `json:"policy,omitempty"`

	// allowInsecureHTTP allows a url with plain http:// to a host other than
	// loopback. Meant for a backend inside a trusted network only: the admin key
	// and every auth token cross the network in the clear.
	// +optional
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`
}

// BackendType is the kind of a TokenBackend.
type BackendType string

// Backend types.
const (
	// BackendTokenService speaks the Token Service API v1.
	BackendTokenService BackendType = "TokenService"
	// BackendHydra manages Ory Hydra OAuth2 clients (client-credentials grant).
	BackendHydra BackendType = "Hydra"
)

// HydraSettings are the settings of a Hydra backend.
type HydraSettings struct {
	// tokenURL is Hydra's public token endpoint, e.g.
	// https://auth.example.com/oauth2/token: written into each Secret (key
	// tokenUrl), and asked which client secret is live after a crash.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/]+(/.*)?$`
	// +required
	TokenURL string `json:"tokenURL"`

	// grantTypes of each enabled client. Only client_credentials is supported:
	// the operator's clients are machine credentials.
	// +kubebuilder:default={client_credentials}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1
	// +kubebuilder:validation:items:Enum=client_credentials
	// +listType=set
	// +optional
	GrantTypes []string `json:"grantTypes,omitempty"`
}

// TokenBackendPolicy is what a cluster admin lets the ApiTokens of one
// TokenBackend ask for. Several TokenBackends may point to the same URL with
// different policies and allowedNamespaces: one per tenant.
type TokenBackendPolicy struct {
	// allowedScopes are the scopes ApiTokens may hold. Each entry is a scope name
	// (reports:read), all permissions of a category (reports:*) or one permission
	// in every category (*:read). Omitted: every scope of the catalog.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^([a-z0-9-]+:([a-z0-9-]+|\*)|\*:[a-z0-9-]+)$`
	// +listType=set
	// +optional
	AllowedScopes []string `json:"allowedScopes,omitempty"`

	// allowedDeletionPolicies are the deletion policies ApiTokens may declare.
	// Omitted: all three (Delete, Disable, Orphan).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	// +listType=set
	// +optional
	AllowedDeletionPolicies []DeletionPolicy `json:"allowedDeletionPolicies,omitempty"`

	// adoptionNamespaces selects the namespaces whose ApiTokens may adopt an
	// existing backend token (spec.adopt). Omitted: adoption is refused.
	// +optional
	AdoptionNamespaces *metav1.LabelSelector `json:"adoptionNamespaces,omitempty"`
}

// TokenBackendCatalog is what the backend account offers, as its GET /v1/catalog
// answered. A list the backend left empty, or one too long to publish, is
// omitted, and then not checked at admission or reconcile: the backend decides.
type TokenBackendCatalog struct {
	// apiVersions are the API versions the backend offers, ascending.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	APIVersions []int32 `json:"apiVersions,omitempty"`

	// scopes are the names of the scopes the backend offers, sorted.
	// +kubebuilder:validation:MaxItems=512
	// +kubebuilder:validation:items:MaxLength=128
	// +listType=set
	// +optional
	Scopes []string `json:"scopes,omitempty"`

	// contacts are the e-mails of the account's users, sorted: the values a
	// primaryContact may take.
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=254
	// +listType=set
	// +optional
	Contacts []string `json:"contacts,omitempty"`
}

// TokenBackendStatus is the observed state of a TokenBackend.
type TokenBackendStatus struct {
	// observedGeneration is the metadata.generation that the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the catalog was fetched with the credentials.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// latestApiVersion is the backend's latest API version.
	// +optional
	LatestAPIVersion int32 `json:"latestApiVersion,omitempty"`

	// catalog is what the account offers (GET /v1/catalog), published when it was
	// fetched: the API versions, scopes and contacts that ApiTokens may use.
	// +optional
	Catalog *TokenBackendCatalog `json:"catalog,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=tb,categories=apitoken-operator
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Latest",type=integer,JSONPath=`.status.latestApiVersion`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// TokenBackend is one Token Service account that ApiTokens use: its URL, admin
// credentials, TLS trust, rate limit and which namespaces may use it.
type TokenBackend struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec configures the backend.
	// +required
	Spec TokenBackendSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status TokenBackendStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// TokenBackendList contains a list of TokenBackend.
type TokenBackendList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TokenBackend `json:"items"`
}
