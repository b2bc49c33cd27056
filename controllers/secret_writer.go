package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// secretWriterIdle is how long the connections that carried Secret writes stay
// open after the last one.
const secretWriterIdle = time.Second

// secretWriter writes Secrets (the only requests of the operator whose bodies
// and answers hold auth tokens) over HTTP/1.1 connections of its own, and closes
// them once no Secret has been written for secretWriterIdle. A connection keeps
// the last request it wrote and the last answer it read in its buffers for as
// long as it lives; on the operator's shared HTTP/2 connection to the API server
// that would be a Secret, token included, until a larger request came along.
// Closed, the buffers are garbage: at rest the operator holds no auth token (test
// e2e TestOperatorHeapHoldsNoAuthToken). HTTP/1.1 because client-go's HTTP/2
// connections (golang.org/x/net/http2) are not the transport's to close. Under
// load the connections stay open, so a burst of writes pays no extra handshakes.
type secretWriter struct {
	client.Client // the manager's, for everything but Secret creates and updates
	writer        client.Client
	transport     *http.Transport

	mu   sync.Mutex
	idle *time.Timer
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
		IdleConnTimeout:     0, // closeConnections closes them; see there
		DisableCompression:  cfg.DisableCompression,
		// A non-nil, empty map: no HTTP/2.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	rt, err := rest.HTTPWrappersForConfig(cfg, transport)
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	writer, err := client.New(cfg, client.Options{HTTPClient: &http.Client{Transport: rt, Timeout: cfg.Timeout}, Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	return &secretWriter{Client: managerClient, writer: writer, transport: transport}, nil
}

// Create writes a new Secret.
func (w *secretWriter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	defer w.closeWhenIdle()
	return w.writer.Create(ctx, obj, opts...)
}

// Update rewrites a Secret.
func (w *secretWriter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	defer w.closeWhenIdle()
	return w.writer.Update(ctx, obj, opts...)
}

// closeWhenIdle closes the writer's idle connections secretWriterIdle after
// the last write.
func (w *secretWriter) closeWhenIdle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.idle == nil {
		w.idle = time.AfterFunc(secretWriterIdle, w.closeConnections)
		return
	}
	w.idle.Reset(secretWriterIdle)
}

// maxIdleSecretConns is how many of the writer's connections stay open between
// writes: about the number of workers, so that a burst reuses them.
const maxIdleSecretConns = 16

// closeConnections closes the writer's idle connections. The transport sets no
// idle timeout of its own: a connection's idle timer would keep it, and the last
// Secret in its buffers, reachable for that long even after it is closed.
func (w *secretWriter) closeConnections() { w.transport.CloseIdleConnections() }
