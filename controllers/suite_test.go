package controllers

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

// The integration suite: a real kube-apiserver and etcd (envtest), the manager
// running both controllers, and tokenservice in-process over HTTP.

const (
	testAdminKey      = "integration-admin-key"
	testResync        = 5 * time.Second
	operatorNamespace = framework.OperatorNamespace
)

var (
	k8s     client.WithWatch
	tsURL   string
	tsAdmin *backend.Client // the test's own view of the backend
	service *framework.TokenService
	// controlPlane is the suite's envtest, for tests that create TokenBackends.
	controlPlane *framework.ControlPlane
	faultPlan    = &faults.Rules{}
	// operatorCache is the manager's cache: what the operator holds in memory.
	operatorCache cache.Cache
	testScope     = NewScheme()
	logSink       = &framework.SyncBuffer{}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	flag.Parse()
	if fuzzing() {
		return m.Run() // fuzz targets test pure functions: no cluster per fuzz worker
	}
	logf.SetLogger(zap.New(zap.WriteTo(logSink), zap.UseDevMode(true), zap.Level(zapcore.Level(-10))))
	var err error
	controlPlane, err = framework.StartControlPlane("..", testScope)
	cp := controlPlane
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cp.Stop()
	k8s = cp.Client
	if service, err = framework.StartTokenService(testAdminKey, staleCatalog); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer service.Close()
	tsURL, tsAdmin = service.URL, service.Admin

	base := framework.ManagerOptions()
	base.Scheme = testScope
	mgr, err := NewManager(cp.Config, base, Options{CredentialsNamespace: operatorNamespace, BackendTransport: &faults.Transport{Policy: faultPlan.Policy}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	operatorCache = mgr.GetCache()
	defer framework.RunManager(mgr)()
	ctx := context.Background()
	if err := cp.CreateAdminKey(ctx, testAdminKey); err != nil {
		fmt.Fprintln(os.Stderr, "admin key:", err)
		return 1
	}
	if err := cp.CreateTokenBackend(ctx, newBackend("default", nil)); err != nil {
		fmt.Fprintln(os.Stderr, "default backend:", err)
		return 1
	}
	defer func() {
		if testHydra != nil {
			testHydra.Stop()
		}
	}()
	code := m.Run()
	if code == 0 {
		if err := checkNoLeaks(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return code
}

// checkNoLeaks searches the operator's logs (at the highest verbosity), its
// metrics, all events and all ApiTokens for every auth token the suite was issued.
func checkNoLeaks(ctx context.Context) error {
	places, err := framework.ClusterHaystacks(ctx, k8s, "")
	if err != nil {
		return err
	}
	places["logs"] = logSink.String()
	if places["metrics"], err = framework.InProcessMetrics(); err != nil {
		return err
	}
	issued := service.Issued.All()
	hydraSecrets.Range(func(secret, _ any) bool {
		issued = append(issued, secret.(string))
		return true
	})
	if len(issued) == 0 {
		fmt.Println("secret-leak check skipped: the tests run issued no auth token")
		return nil
	}
	leaks, err := framework.FindLeaks(issued, places)
	if err != nil {
		return err
	}
	if len(leaks) > 0 {
		return fmt.Errorf("auth tokens leaked: %s", strings.Join(leaks, "; "))
	}
	fmt.Printf("secret-leak check: %d auth tokens issued, none in %d bytes of logs, metrics, events or statuses\n", len(issued), len(places["logs"])+len(places["metrics"])+len(places["events"])+len(places["ApiTokens"]))
	return nil
}

func newBackend(name string, allowed *metav1.LabelSelector) *tokensv1alpha1.TokenBackend {
	tb := framework.TokenBackendFor(name, tsURL, testResync)
	tb.Spec.AllowedNamespaces = allowed
	return tb
}

func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
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

// backendCalls is how many HTTP requests of one call (create, get, reset, ...)
// the operator has made to any backend, from its own metric.
func backendCalls(call string) float64 {
	families, err := metrics.Registry.Gather()
	if err != nil {
		panic(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != "apitoken_backend_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "call" && l.GetValue() == call {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
