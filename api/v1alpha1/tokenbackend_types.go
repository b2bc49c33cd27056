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
type TokenBackendSpec struct {
	// url of the Token Service API, e.g. https://tokens.example.com. Plain http is
	// meant for loopback and tests.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s/]+(/.*)?$`
	// +required
	URL string `json:"url"`

	// credentialsSecretRef selects the admin key of the account.
	// +required
	CredentialsSecretRef SecretKeyReference `json:"credentialsSecretRef"`

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
