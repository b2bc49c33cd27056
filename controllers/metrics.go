package controllers

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	backendRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_backend_requests_total",
		Help: "HTTP requests to token backends, by call and status code (0: network error).",
	}, []string{"call", "code"})
	backendLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apitoken_backend_request_duration_seconds",
		Help:    "Latency of HTTP requests to token backends, by call.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	}, []string{"call"})
	tokenResets = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apitoken_resets_total",
		Help: "Token resets carried out for a new reset annotation value.",
	})
	tokenRotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apitoken_rotations_total",
		Help: "Credential rotations carried out, by mode (in-place or overlap).",
	}, []string{"mode"})
)

func init() {
	metrics.Registry.MustRegister(backendRequests, backendLatency, tokenResets, tokenRotations)
}

// observeBackendCall is the backend client's Observe hook.
func observeBackendCall(call string, code int, d time.Duration) {
	backendRequests.WithLabelValues(call, strconv.Itoa(code)).Inc()
	backendLatency.WithLabelValues(call).Observe(d.Seconds())
}
