// Package reliability proves DESIGN section 5 under faults: crashes at every step,
// lost responses, 5xx and 429 from the backend, a backend that is down, canary
// secrets, and bad input. It runs against envtest (real etcd + kube-apiserver) and
// tokenservice over HTTP, with the operator's manager restarted after each crash.
package reliability

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/controllers"
	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

const adminKey = "reliability-admin-key"

var (
	restConfig *rest.Config
	k8s        client.Client
	scheme     = runtime.NewScheme()
	logs       = &framework.SyncBuffer{}
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if _, err := framework.EnsureAssets(filepath.Join("..", "..")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The highest verbosity: the canary test searches everything the operator logs.
	logf.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(false), zap.Level(zapcore.Level(-10))))
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tokensv1alpha1.AddToScheme(scheme))
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restConfig = cfg
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apitoken-system"}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tokenservice-admin", Namespace: "apitoken-system"},
		Data:       map[string][]byte{"apiKey": []byte(adminKey)},
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// world is one test's backend and operator: a tokenservice, a TokenBackend
// pointing at it through a fault-injecting transport, and an operator that the
// harness restarts after each simulated crash.
type world struct {
	t         *testing.T
	backend   string // TokenBackend name
	service   *httptest.Server
	handler   *gate
	admin     *backend.Client
	transport *faults.Transport
	crasher   *faults.Crasher
	resync    time.Duration

	mu       sync.Mutex
	stop     context.CancelFunc
	stopped  chan struct{}
	restarts int
}

type worldOptions struct {
	policy     faults.Policy
	retryAfter time.Duration
	resync     time.Duration
	// wrap lets a test put a handler in front of tokenservice (e.g. echoing canaries).
	wrap func(http.Handler) http.Handler
}

func newWorld(t *testing.T, name string, o worldOptions) *world {
	t.Helper()
	srv, err := tokenservice.New(tokenservice.Config{AdminKey: adminKey})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if o.wrap != nil {
		h = o.wrap(srv)
	}
	g := &gate{next: h}
	ts := httptest.NewServer(g)
	t.Cleanup(func() { ts.Close(); _ = srv.Close() })
	admin, _ := backend.New(backend.Options{URL: ts.URL, AdminKey: adminKey})
	if o.resync == 0 {
		o.resync = 5 * time.Second
	}
	w := &world{
		t: t, backend: name, service: ts, handler: g, admin: admin, resync: o.resync,
		transport: &faults.Transport{Policy: o.policy, RetryAfter: o.retryAfter},
		crasher:   faults.NewCrasher(),
	}
	w.startOperator()
	t.Cleanup(w.stopOperator)
	go w.restartOnCrash()

	tb := &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1alpha1.TokenBackendSpec{
			URL:                  ts.URL,
			CredentialsSecretRef: tokensv1alpha1.SecretKeyReference{Namespace: "apitoken-system", Name: "tokenservice-admin", Key: "apiKey"},
			RateLimit:            tokensv1alpha1.RateLimit{QPS: 1000, Burst: 1000},
			ResyncInterval:       &metav1.Duration{Duration: o.resync},
		},
	}
	if err := k8s.Create(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	w.eventually("TokenBackend ready", 30*time.Second, func() error {
		got := &tokensv1alpha1.TokenBackend{}
		if err := k8s.Get(t.Context(), client.ObjectKey{Name: name}, got); err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == "Ready" && c.Status == metav1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not ready: %+v", got.Status.Conditions)
	})
	return w
}

// startOperator starts a fresh manager: new caches, new reconcilers, no memory of
// the previous process.
func (w *world) startOperator() {
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	registry := controllers.NewRegistry()
	k := w.crasher.Client(mgr.GetClient())
	err = (&controllers.TokenBackendReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: scheme, Registry: registry,
		Recorder: mgr.GetEventRecorder("apitoken-operator"),
		NewBackend: func(o backend.Options) (backend.Backend, error) {
			o.Transport = w.transport
			c, err := backend.New(o)
			if err != nil {
				return nil, err
			}
			return w.crasher.Backend(c), nil
		},
	}).SetupWithManager(mgr)
	if err == nil {
		err = (&controllers.ApiTokenReconciler{
			Client: k, APIReader: mgr.GetAPIReader(), Scheme: scheme,
			Recorder: mgr.GetEventRecorder("apitoken-operator"), Registry: registry,
		}).SetupWithManager(mgr)
	}
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = mgr.Start(ctx)
	}()
	w.mu.Lock()
	w.stop, w.stopped = cancel, stopped
	w.mu.Unlock()
}

func (w *world) stopOperator() {
	w.mu.Lock()
	stop, stopped := w.stop, w.stopped
	w.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
}

// restartOnCrash stops the crashed operator and starts a new one.
func (w *world) restartOnCrash() {
	for {
		select {
		case <-w.t.Context().Done():
			return
		case <-w.crasher.Crashes():
		}
		w.stopOperator()
		w.crasher.Restarted()
		w.mu.Lock()
		w.restarts++
		w.mu.Unlock()
		if w.t.Context().Err() != nil {
			return
		}
		w.startOperator()
	}
}

func (w *world) eventually(what string, timeout time.Duration, check func() error) {
	w.t.Helper()
	if err := poll(timeout, check); err != nil {
		w.t.Fatalf("%s: %v", what, err)
	}
}

func poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gate can take the backend down: while closed, every connection is refused
// (the listener stays, requests are answered by hijacking and closing).
type gate struct {
	mu     sync.Mutex
	closed bool
	next   http.Handler
	count  map[string]int // requests per path while closed
}

func (g *gate) setDown(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = down
	if down {
		g.count = map[string]int{}
	}
}

func (g *gate) downRequests() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.count)
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	closed := g.closed
	if closed {
		g.count[r.Method+" "+r.URL.Path]++
	}
	g.mu.Unlock()
	if closed {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	g.next.ServeHTTP(w, r)
}

func ctxBackground() context.Context { return context.Background() }
