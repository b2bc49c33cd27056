package controllers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// The integration suite: a real kube-apiserver and etcd (envtest), the manager
// running both controllers, and tokenservice in-process over HTTP.

const (
	testAdminKey      = "integration-admin-key"
	testResync        = 5 * time.Second
	operatorNamespace = "apitoken-system"
)

var (
	k8s       client.Client
	tsURL     string
	tsAdmin   *backend.Client // the test's own view of the backend
	faults    = &faultInjector{dropCreate: map[string]int{}}
	testScope = runtime.NewScheme()
	logSink   = &framework.SyncBuffer{}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	flag.Parse()
	if fuzzing() {
		return m.Run() // fuzz targets test pure functions: no cluster per fuzz worker
	}
	if _, err := framework.EnsureAssets(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logf.SetLogger(zap.New(zap.WriteTo(logSink), zap.UseDevMode(true), zap.Level(zapcore.Level(-10))))
	utilruntime.Must(clientgoscheme.AddToScheme(testScope))
	utilruntime.Must(tokensv1alpha1.AddToScheme(testScope))

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	srv, err := tokenservice.New(tokenservice.Config{AdminKey: testAdminKey})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ts := httptest.NewServer(issued.capture(srv))
	defer ts.Close()
	tsURL = ts.URL
	tsAdmin, _ = backend.New(backend.Options{URL: ts.URL, AdminKey: testAdminKey})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScope,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	registry := NewRegistry()
	err = (&TokenBackendReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(), Registry: registry,
		NewBackend: func(o backend.Options) (backend.Backend, error) {
			o.Observe = observeBackendCall
			c, err := backend.New(o)
			if err != nil {
				return nil, err
			}
			return &faultyBackend{Backend: c, faults: faults}, nil
		},
	}).SetupWithManager(mgr)
	if err == nil {
		err = (&ApiTokenReconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(),
			Recorder: mgr.GetEventRecorder("apitoken-operator"), Registry: registry,
		}).SetupWithManager(mgr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	k8s, err = client.New(cfg, client.Options{Scheme: testScope})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := createDefaultBackend(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "default backend:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if leaks := findLeaks(ctx); len(leaks) > 0 {
			fmt.Fprintln(os.Stderr, "auth tokens leaked:", strings.Join(leaks, "; "))
			return 1
		}
		fmt.Printf("secret-leak check: %d auth tokens issued, none in %d bytes of logs, events or statuses\n", len(issued.all()), len(logSink.String()))
	}
	return code
}

// issued records every auth token tokenservice hands out during the suite.
var issued = &issuedTokens{}

type issuedTokens struct {
	mu     sync.Mutex
	tokens []string
}

func (i *issuedTokens) capture(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body struct {
			AuthToken string `json:"authToken"`
		}
		if json.Unmarshal(rec.Body.Bytes(), &body) == nil && body.AuthToken != "" {
			i.mu.Lock()
			i.tokens = append(i.tokens, body.AuthToken)
			i.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

func (i *issuedTokens) all() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]string(nil), i.tokens...)
}

// findLeaks searches the operator's logs (at the highest verbosity), all events
// and all ApiToken statuses for every issued auth token, in plain, base64 and
// URL-encoded form.
func findLeaks(ctx context.Context) []string {
	events := &eventsv1.EventList{}
	_ = k8s.List(ctx, events)
	tokens := &tokensv1alpha1.ApiTokenList{}
	_ = k8s.List(ctx, tokens)
	eventsJSON, _ := json.Marshal(events)
	statusJSON, _ := json.Marshal(tokens)
	places := map[string]string{"logs": logSink.String(), "events": string(eventsJSON), "ApiTokens": string(statusJSON)}
	var leaks []string
	for _, token := range issued.all() {
		for _, form := range []string{token, base64.StdEncoding.EncodeToString([]byte(token)), url.QueryEscape(token)} {
			for place, text := range places {
				if strings.Contains(text, form) {
					leaks = append(leaks, "an auth token in the "+place)
				}
			}
		}
	}
	return leaks
}

func createDefaultBackend(ctx context.Context) error {
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		return err
	}
	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tokenservice-admin", Namespace: operatorNamespace},
		Data:       map[string][]byte{"apiKey": []byte(testAdminKey)},
	}); err != nil {
		return err
	}
	if err := k8s.Create(ctx, newBackend("default", nil)); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		tb := &tokensv1alpha1.TokenBackend{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: "default"}, tb); err == nil && isReady(tb.Status.Conditions) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("TokenBackend default not ready")
}

func newBackend(name string, allowed *metav1.LabelSelector) *tokensv1alpha1.TokenBackend {
	return &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1alpha1.TokenBackendSpec{
			URL:                  tsURL,
			CredentialsSecretRef: tokensv1alpha1.SecretKeyReference{Namespace: operatorNamespace, Name: "tokenservice-admin", Key: "apiKey"},
			AllowedNamespaces:    allowed,
			RateLimit:            tokensv1alpha1.RateLimit{QPS: 1000, Burst: 1000},
			ResyncInterval:       &metav1.Duration{Duration: testResync},
		},
	}
}

func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// faultInjector makes the backend lose responses of chosen calls after the backend
// acted on them, as a broken connection would.
type faultInjector struct {
	mu         sync.Mutex
	dropCreate map[string]int // token name -> create responses still to lose
}

func (f *faultInjector) take(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropCreate[name] > 0 {
		f.dropCreate[name]--
		return true
	}
	return false
}

type faultyBackend struct {
	backend.Backend
	faults *faultInjector
}

func (b *faultyBackend) Create(ctx context.Context, key string, req backend.CreateRequest) (*backend.Token, backend.Credentials, error) {
	tok, creds, err := b.Backend.Create(ctx, key, req)
	if err == nil && b.faults.take(req.Name) {
		return nil, backend.Credentials{}, fmt.Errorf("create: %w: injected lost response", backend.ErrUnavailable)
	}
	return tok, creds, err
}

// eventsFor lists the events about an ApiToken.
func eventsFor(t *testing.T, at *tokensv1alpha1.ApiToken) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(at.Namespace)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == at.Name && e.Regarding.Kind == "ApiToken" {
			out = append(out, e)
		}
	}
	return out
}
