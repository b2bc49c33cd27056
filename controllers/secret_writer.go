package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// secretWriter writes Secrets (the only requests of the operator whose bodies
// and answers hold auth tokens) over HTTP/1.1 connections of its own, closed
// once no Secret has been written for backend.SecretConnIdle (the backend
// clients' IdleClosing transport). A connection keeps the last request it wrote
// and the last answer it read in its buffers for as long as it lives; on the
// operator's shared HTTP/2 connection to the API server that would be a Secret,
// token included, until a larger request came along. Closed, the buffers are
// garbage: at rest the operator holds no auth token (test e2e
// TestOperatorHeapHoldsNoAuthToken). HTTP/1.1 because client-go's HTTP/2
// connections (golang.org/x/net/http2) are not the transport's to close. Under
// load the connections stay open, so a burst of writes pays no extra handshakes.
type secretWriter struct {
	client.Client // the manager's, for everything but Secret creates and updates
	writer        client.Client
}

// newSecretWriter returns a client that creates and updates through the
// secretWriter's connections and does everything else with the manager's client.
func newSecretWriter(mgr manager.Manager, managerClient client.Client) (*secretWriter, error) {
	cfg := rest.CopyConfig(mgr.GetConfig())
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	if tlsConfig != nil {
		tlsConfig.NextProtos = []string{"http/1.1"}
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: maxIdleSecretConns,
		IdleConnTimeout:     0, // IdleClosing closes them; see there
		DisableCompression:  cfg.DisableCompression,
		// A non-nil, empty map: no HTTP/2.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	rt, err := rest.HTTPWrappersForConfig(cfg, backend.IdleClosing(transport))
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	writer, err := client.New(cfg, client.Options{HTTPClient: &http.Client{Transport: rt, Timeout: cfg.Timeout}, Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	return &secretWriter{Client: managerClient, writer: writer}, nil
}

// Create writes a new Secret.
func (w *secretWriter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return w.writer.Create(ctx, obj, opts...)
}

// Update rewrites a Secret.
func (w *secretWriter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return w.writer.Update(ctx, obj, opts...)
}

// maxIdleSecretConns is how many of the writer's connections stay open between
// writes: about the number of workers, so that a burst reuses them.
const maxIdleSecretConns = 16
