package controllers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
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
//
// The API server answers the Secret writes with the Secret's metadata alone
// (as=PartialObjectMetadata, the metadata client's form): its full answer would
// carry the auth token back, one more copy of it for the operator to decode and
// drop, and the bytes of a Secret decoded for nothing.
type secretWriter struct {
	client.Client // the manager's, for everything but Secret creates and updates
	writer        client.Client
	secrets       rest.Interface // core/v1 over the writer's connections, answers as metadata
	encoder       runtime.Encoder
}

// newSecretWriter returns a client that creates and updates through the
// secretWriter's connections and does everything else with the manager's client.
func newSecretWriter(mgr manager.Manager, managerClient client.Client) (*secretWriter, error) {
	return newSecretWriterFor(mgr.GetConfig(), mgr.GetScheme(), mgr.GetRESTMapper(), managerClient, nil)
}

// newSecretWriterFor is newSecretWriter from the manager's parts; wrap, when
// set, wraps the writer's transport (the tests read its answers).
func newSecretWriterFor(restCfg *rest.Config, scheme *runtime.Scheme, mapper meta.RESTMapper, managerClient client.Client, wrap func(http.RoundTripper) http.RoundTripper) (*secretWriter, error) {
	cfg := rest.CopyConfig(restCfg)
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
	closing := backend.IdleClosing(transport)
	if wrap != nil {
		closing = wrap(closing)
	}
	rt, err := rest.HTTPWrappersForConfig(cfg, closing)
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	httpClient := &http.Client{Transport: rt, Timeout: cfg.Timeout}
	writer, err := client.New(cfg, client.Options{HTTPClient: httpClient, Scheme: scheme, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	secrets, err := metadataRESTClient(cfg, corev1.SchemeGroupVersion, "/api", httpClient)
	if err != nil {
		return nil, fmt.Errorf("secret writer: %w", err)
	}
	codecs := serializer.NewCodecFactory(scheme)
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		return nil, errors.New("secret writer: no protobuf serializer")
	}
	return &secretWriter{Client: managerClient, writer: writer, secrets: secrets,
		encoder: codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion)}, nil
}

// Create writes a new Secret; obj's metadata becomes the API server's.
func (w *secretWriter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return w.writer.Create(ctx, obj, opts...)
	}
	o := (&client.CreateOptions{}).ApplyOptions(opts)
	return w.write(ctx, secret, createParams(w.secrets.Post().Namespace(secret.Namespace).Resource("secrets"), o.AsCreateOptions()))
}

// Update rewrites a Secret; obj's metadata becomes the API server's.
func (w *secretWriter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return w.writer.Update(ctx, obj, opts...)
	}
	o := (&client.UpdateOptions{}).ApplyOptions(opts)
	return w.write(ctx, secret, updateParams(w.secrets.Put().Namespace(secret.Namespace).Resource("secrets").Name(secret.Name), o.AsUpdateOptions()))
}

// write sends the Secret (in protobuf) with req; the Secret gets the UID and
// resourceVersion the API server answers with (readMetadataAnswer).
func (w *secretWriter) write(ctx context.Context, secret *corev1.Secret, req *rest.Request) error {
	body, err := runtime.Encode(w.encoder, secret)
	if err != nil {
		return fmt.Errorf("encode Secret: %w", err)
	}
	answer, err := readMetadataAnswer(ctx, req.Body(body).SetHeader("Content-Type", runtime.ContentTypeProtobuf))
	if err != nil {
		return err
	}
	answer.into(secret)
	return nil
}

// maxIdleSecretConns is how many of the writer's connections stay open between
// writes: about the number of workers, so that a burst reuses them.
const maxIdleSecretConns = 16
