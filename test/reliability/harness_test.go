// Package reliability proves the invariants of docs/design.md under faults: crashes at every step,
// lost responses, 5xx and 429 from the backend, a backend that is down, canary
// secrets, and bad input. It runs against envtest (real etcd + kube-apiserver) and
// tokenservice over HTTP, with the operator's manager restarted after each crash.
package reliability

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/controllers"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
	"github.com/apitoken-dev/apitoken-operator/test/framework/hydraserver"
)

const adminKey = "reliability-admin-key"

var (
	controlPlane *framework.ControlPlane
	k8s          client.Client
	scheme       = controllers.NewScheme()
	logs         = &framework.SyncBuffer{}
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The highest verbosity: the canary test searches everything the operator logs.
	logf.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(false), zap.Level(zapcore.Level(-10))))
	var err error
	if controlPlane, err = framework.StartControlPlane(filepath.Join("..", ".."), scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer controlPlane.Stop()
	k8s = controlPlane.Client
	if err := controlPlane.CreateAdminKey(context.Background(), adminKey); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// world is one test's backend and operator: a tokenservice (or a real Ory
// Hydra), a TokenBackend pointing at it through a fault-injecting transport, and
// an operator that the harness restarts after each simulated crash.
type world struct {
	t         *testing.T
	backend   string                  // TokenBackend name
	service   *framework.TokenService // nil in a Hydra world
	hydra     *framework.Hydra        // nil in a tokenservice world
	handler   *gate                   // nil in a Hydra world
	transport *faults.Transport
	crasher   *faults.Crasher
	resync    time.Duration
	// admin is the test's own client of the backend, past the faults.
	admin backend.Backend
	// verify asks the backend with credentials as their consumer would, and
	// answers as tokenservice's verify does: 200, 401 (refused) or 403 (a scope
	// the token does not hold); -1 without an answer.
	verify func(ctx context.Context, creds backend.Credentials, scope string) int

	// What the crash trials did in this world, for their summary.
	hostileOps   map[string]int
	consumers    consumerCounts
	leakSearched int

	mu       sync.Mutex
	stop     func()
	restarts int
	// beforeRestart, when set, runs while the crashed operator is down, before
	// the new one starts: what happens in the cluster meanwhile.
	beforeRestart func()
}

type worldOptions struct {
	policy     faults.Policy
	retryAfter time.Duration
	resync     time.Duration
	// wrap lets a test put a handler in front of tokenservice (e.g. echoing canaries).
	wrap func(http.Handler) http.Handler
	// adoption allows adoption (spec.adopt) in every namespace.
	adoption bool
	// hydra makes the TokenBackend one of type Hydra at this Hydra, instead of
	// a tokenservice (wrap does not apply).
	hydra *framework.Hydra
}

func newWorld(t *testing.T, name string, o worldOptions) *world {
	t.Helper()
	if o.resync == 0 {
		o.resync = 5 * time.Second
	}
	w := &world{
		t: t, backend: name, resync: o.resync,
		transport: &faults.Transport{Policy: o.policy, RetryAfter: o.retryAfter},
		crasher:   faults.NewCrasher(), hostileOps: map[string]int{},
	}
	var tb *tokensv1alpha1.TokenBackend
	if o.hydra != nil {
		w.hydra, w.admin, w.verify = o.hydra, o.hydra.Admin, hydraVerify(o.hydra)
		tb = framework.HydraBackendFor(name, o.hydra, o.resync)
	} else {
		g := &gate{}
		w.service = framework.NewTokenService(t, adminKey, func(h http.Handler) http.Handler {
			if o.wrap != nil {
				h = o.wrap(h)
			}
			g.next = h
			return g
		})
		w.handler, w.admin, w.verify = g, w.service.Admin, w.service.VerifyStatus
		tb = framework.TokenBackendFor(name, w.service.URL, o.resync)
	}
	w.startOperator()
	t.Cleanup(w.stopOperator)
	go w.restartOnCrash()

	if o.adoption {
		tb.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AdoptionNamespaces: &metav1.LabelSelector{}}
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	if err := controlPlane.CreateTokenBackend(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	return w
}

// startOperator starts a fresh manager: new caches, new reconcilers, no memory of
// the previous process.
func (w *world) startOperator() {
	base := framework.ManagerOptions()
	base.Scheme = scheme
	mgr, err := controllers.NewManager(controlPlane.Config, base, controllers.Options{
		CredentialsNamespace: framework.OperatorNamespace,
		BackendTransport:     w.transport,
		WrapBackend:          w.crasher.Backend,
		WrapClient:           w.crasher.Client,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	stop := framework.RunManager(mgr)
	w.mu.Lock()
	w.stop = stop
	w.mu.Unlock()
}

func (w *world) stopOperator() {
	w.mu.Lock()
	stop := w.stop
	w.stop = nil
	w.mu.Unlock()
	if stop != nil {
		stop()
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
		meanwhile := w.beforeRestart
		w.mu.Unlock()
		if meanwhile != nil {
			meanwhile()
		}
		if w.t.Context().Err() != nil {
			return
		}
		w.startOperator()
	}
}

func (w *world) eventually(what string, timeout time.Duration, check func() error) {
	w.t.Helper()
	framework.Eventually(w.t, what, timeout, check)
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

// hydraVerify is world.verify for Hydra: a client-credentials grant at its token
// endpoint, as the Secret's consumer asks. A wrong secret (invalid_client) and
// a disabled client (unauthorized_client: Hydra authenticates it, then refuses
// the grant) are 401; a scope the client does not hold (invalid_scope) is 403.
// Any other answer (Hydra's database busy with a concurrent write) is asked
// again, as a consumer would, a few times.
func hydraVerify(h *framework.Hydra) func(context.Context, backend.Credentials, string) int {
	return func(ctx context.Context, creds backend.Credentials, scope string) int {
		status := -1
		for attempt := range 3 {
			if attempt > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			g, err := hydraserver.ClientCredentials(ctx, h.TokenURL, creds.AccountSID, creds.AuthToken.Reveal(), scope)
			switch {
			case ctx.Err() != nil:
				return -1
			case err != nil:
				continue
			case g.Status == http.StatusOK:
				return http.StatusOK
			case g.Error == "invalid_client" || g.Error == "unauthorized_client":
				return http.StatusUnauthorized
			case g.Error == "invalid_scope":
				return http.StatusForbidden
			}
			status = g.Status
		}
		return status
	}
}
