package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Authenticating and authorizing a scrape asks the Kubernetes API: a TokenReview
// for the bearer token, then a SubjectAccessReview for get on the non-resource
// URL /metrics (the metrics-reader ClusterRole grants it). Both are cached for a
// minute or more, so a scrape every 30 s costs about one review of each kind a
// few times an hour.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// SecureMetrics makes the metrics server serve HTTPS, and only to clients that
// the Kubernetes API authenticates and authorizes for get on /metrics (the
// kubebuilder default, controller-runtime's filters.WithAuthenticationAndAuthorization).
// The certificate is o.TLSOpts' GetCertificate when set, else a self-signed one.
func SecureMetrics(o *metricsserver.Options) {
	o.SecureServing = true
	o.FilterProvider = filters.WithAuthenticationAndAuthorization
}
