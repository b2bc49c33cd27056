package framework

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// SecretForms are the ways a secret can show up in text: as is, base64 and
// URL-encoded.
func SecretForms(secret string) []string {
	return []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), url.QueryEscape(secret)}
}

// FindLeaks searches every haystack (name → text) for every form of every
// secret and returns where it found one. A search that could not fail proves
// nothing, so no secrets or an empty haystack is an error.
func FindLeaks(secrets []string, haystacks map[string]string) ([]string, error) {
	if len(secrets) == 0 {
		return nil, errors.New("leak search: no secrets to search for")
	}
	for place, text := range haystacks {
		if text == "" {
			return nil, fmt.Errorf("leak search: nothing to search in the %s", place)
		}
	}
	var leaks []string
	for i, secret := range secrets {
		for _, form := range SecretForms(secret) {
			for place, text := range haystacks {
				if strings.Contains(text, form) {
					leaks = append(leaks, fmt.Sprintf("secret #%d in the %s", i, place))
				}
			}
		}
	}
	return leaks, nil
}

// ClusterHaystacks reads the places of the API server an auth token must never
// reach: events and ApiTokens (all namespaces when namespace is empty). A failed
// read is an error, never an empty haystack.
func ClusterHaystacks(ctx context.Context, c client.Client, namespace string) (map[string]string, error) {
	events := &eventsv1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	tokens := &tokensv1alpha1.ApiTokenList{}
	if err := c.List(ctx, tokens, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list ApiTokens: %w", err)
	}
	eventsJSON, err := json.Marshal(events)
	if err != nil {
		return nil, err
	}
	tokensJSON, err := json.Marshal(tokens)
	if err != nil {
		return nil, err
	}
	return map[string]string{"events": string(eventsJSON), "ApiTokens": string(tokensJSON)}, nil
}

// InProcessMetrics renders controller-runtime's metrics registry, where an
// operator running in the test process records its metrics.
func InProcessMetrics() (string, error) {
	families, err := metrics.Registry.(prometheus.Gatherer).Gather()
	if err != nil {
		return "", fmt.Errorf("gather metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return "", err
		}
	}
	return buf.String(), nil
}
