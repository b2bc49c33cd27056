package framework

// This file: the operator's metrics, read as Prometheus reads them: over HTTPS,
// with the token of a ServiceAccount bound to the ClusterRole metrics-reader.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	certutil "k8s.io/client-go/util/cert"
)

const (
	// MetricsReaderRole is config/rbac's metrics-reader ClusterRole, as named by
	// config/default.
	MetricsReaderRole = "apitoken-metrics-reader"
	// MetricsScraper is the ServiceAccount (in OperatorNamespace), bound to
	// MetricsReaderRole, that Cluster.Metrics scrapes as.
	MetricsScraper = "metrics-scraper"
)

// metricsSecure tells whether the operator started with args serves its
// metrics over HTTPS (the default: --metrics-secure).
func metricsSecure(args []string) bool {
	return !slices.ContainsFunc(args, func(a string) bool {
		return strings.TrimLeft(a, "-") == "metrics-secure=false"
	})
}

// writeMetricsCert writes a serving certificate for 127.0.0.1 into dir, for
// --metrics-cert-path, and returns a pool that trusts it: the framework checks
// the operator's certificate rather than skipping verification.
func writeMetricsCert(dir string) (*x509.CertPool, error) {
	cert, key, err := certutil.GenerateSelfSignedCertKey("apitoken-operator-metrics", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), cert, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cert) {
		return nil, errors.New("the metrics certificate holds no PEM certificate")
	}
	return pool, nil
}

// setUpMetricsReader gives the Cluster an identity allowed to read metrics: the
// ServiceAccount MetricsScraper bound to MetricsReaderRole, and its token.
func (c *Cluster) setUpMetricsReader(ctx context.Context) error {
	token, err := c.ServiceAccountToken(ctx, OperatorNamespace, MetricsScraper)
	if err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "create", "clusterrolebinding", "apitoken-metrics-scraper",
		"--clusterrole="+MetricsReaderRole, "--serviceaccount="+OperatorNamespace+":"+MetricsScraper); err != nil {
		return err
	}
	c.MetricsToken = token
	return os.WriteFile(filepath.Join(c.opts.Dir, "metrics.token"), []byte(token), 0o600)
}

// ServiceAccountToken creates the ServiceAccount namespace/name unless it exists
// and returns a token for it. Unbound, it is an identity with no permissions.
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	manifest := fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n", name, namespace)
	if _, err := c.KubectlWithInput(ctx, manifest, "apply", "-f", "-"); err != nil {
		return "", err
	}
	token, err := c.Kubectl(ctx, "-n", namespace, "create", "token", name, "--duration=48h")
	return strings.TrimSpace(token), err
}

// Metrics scrapes the operator's metrics as Prometheus does, with MetricsToken
// (over plain http when the operator runs with --metrics-secure=false), and
// fails unless the answer is 200.
func (c *Cluster) Metrics(ctx context.Context) (string, error) {
	code, body, err := c.ScrapeMetrics(ctx, c.MetricsToken)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d %s", c.OperatorMetricsURL, code, strings.TrimSpace(body))
	}
	return body, nil
}

// ScrapeMetrics GETs OperatorMetricsURL with the bearer token (none when
// empty), trusting only the operator's metrics certificate, and returns the
// status code and body.
func (c *Cluster) ScrapeMetrics(ctx context.Context, token string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, WaitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.OperatorMetricsURL, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.metricsCA, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("scrape %s: %w", c.OperatorMetricsURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
