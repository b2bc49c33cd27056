package framework

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// OperatorNamespace is where config/default installs the operator and where the
// admin key Secrets of the test TokenBackends live.
const OperatorNamespace = "apitoken-system"

// AdminKeySecret is the name and key of the admin key Secret the test
// TokenBackends refer to.
const (
	AdminKeySecret = "tokenservice-admin"
	AdminKeyKey    = "apiKey"
)

// ControlPlane is etcd and kube-apiserver (envtest) with this operator's CRDs
// installed, and a cluster-admin client, for suites that run the operator
// in-process.
type ControlPlane struct {
	Env    *envtest.Environment
	Config *rest.Config
	// Client can watch too: ExpectNoWrites watches what must not be written.
	Client client.WithWatch
}

// StartControlPlane starts envtest with the CRDs of config/crd/bases. repoRoot
// is the repository relative to the test's package directory.
func StartControlPlane(repoRoot string, scheme *runtime.Scheme) (*ControlPlane, error) {
	if _, err := EnsureAssets(repoRoot); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	k8s, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &ControlPlane{Env: env, Config: cfg, Client: k8s}, nil
}

// Stop stops kube-apiserver and etcd.
func (c *ControlPlane) Stop() { _ = c.Env.Stop() }

// CreateAdminKey creates the operator's namespace and the admin key Secret that
// TokenBackendFor refers to.
func (c *ControlPlane) CreateAdminKey(ctx context.Context, adminKey string) error {
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}}); err != nil {
		return err
	}
	return c.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: AdminKeySecret, Namespace: OperatorNamespace},
		Data:       map[string][]byte{AdminKeyKey: []byte(adminKey)},
	})
}

// TokenBackendFor is a TokenBackend for a test tokenservice: the admin key of
// CreateAdminKey, no client-side limit worth the name, and the given resync.
func TokenBackendFor(name, url string, resync time.Duration) *tokensv1alpha1.TokenBackend {
	return &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tokensv1alpha1.TokenBackendSpec{
			URL:                  url,
			CredentialsSecretRef: &tokensv1alpha1.SecretKeyReference{Namespace: OperatorNamespace, Name: AdminKeySecret, Key: AdminKeyKey},
			RateLimit:            tokensv1alpha1.RateLimit{QPS: 1000, Burst: 1000},
			ResyncInterval:       &metav1.Duration{Duration: resync},
		},
	}
}

// CreateTokenBackend creates a TokenBackend and waits until it is Ready.
func (c *ControlPlane) CreateTokenBackend(ctx context.Context, tb *tokensv1alpha1.TokenBackend) error {
	return CreateTokenBackend(ctx, c.Client, tb, WaitTimeout)
}

// CreateTokenBackend creates a TokenBackend with c and waits up to timeout
// until it is Ready.
func CreateTokenBackend(ctx context.Context, c client.Client, tb *tokensv1alpha1.TokenBackend, timeout time.Duration) error {
	if err := c.Create(ctx, tb); err != nil {
		return err
	}
	return Poll(timeout, func() error {
		got := &tokensv1alpha1.TokenBackend{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(tb), got); err != nil {
			return err
		}
		if !ConditionTrue(got.Status.Conditions, tokensv1alpha1.ConditionReady) {
			return fmt.Errorf("TokenBackend %s not ready: %+v", tb.Name, got.Status.Conditions)
		}
		return nil
	})
}

// ManagerOptions are the manager options of an operator run in-process by a
// test: no metrics or probe listeners, and controller names reusable across the
// restarts of one test binary.
func ManagerOptions() ctrl.Options {
	return ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
}

// RunManager starts a manager in the background and returns a function that
// stops it and waits until it has stopped.
func RunManager(mgr ctrl.Manager) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = mgr.Start(ctx)
	}()
	return func() {
		cancel()
		<-stopped
	}
}
