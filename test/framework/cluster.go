package framework

// This file: a Cluster of real processes (make dev, the e2e tests and the bench).

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Options configure a Cluster.
type Options struct {
	// Dir holds kubeconfigs, logs and the tokenservice database.
	Dir string
	// RepoRoot is the repository, for config/.
	RepoRoot string
	// Assets is the directory of etcd, kube-apiserver, kube-controller-manager and kubectl.
	Assets string
	// TokenService and Manager are the binaries to run.
	TokenService, Manager string
	// TokenServiceAddr is where tokenservice listens; empty picks a free port.
	TokenServiceAddr string
	// TokenServiceArgs are extra flags for tokenservice.
	TokenServiceArgs []string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Audit logs every request of the operator's ServiceAccount to AuditLogPath,
	// so that its Kubernetes requests can be counted by verb and resource.
	Audit bool
	// OperatorArgs are extra flags for every start of the operator. With
	// --metrics-secure=false the Cluster reads metrics over plain http.
	OperatorArgs []string
}

// OperatorUser is the identity the operator runs as.
const OperatorUser = "system:serviceaccount:apitoken-system:apitoken-controller-manager"

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata # Secrets: never their contents
  users: ["` + OperatorUser + `"]
  resources: [{group: "", resources: ["secrets"]}]
- level: Request # everything else with the request body, to tell why a write happened
  users: ["` + OperatorUser + `"]
- level: None
`

// Cluster is a running local control plane with tokenservice and the operator.
type Cluster struct {
	opts Options
	env  *envtest.Environment
	// AdminConfig is a cluster-admin client configuration.
	AdminConfig *rest.Config
	// AdminKubeconfig and OperatorKubeconfig are kubeconfig files.
	AdminKubeconfig, OperatorKubeconfig string
	// TokenServiceURL and AdminKey reach tokenservice.
	TokenServiceURL, AdminKey string
	// OperatorMetricsURL serves the operator's Prometheus metrics: https, to
	// clients allowed get on /metrics (read it with Metrics), unless the
	// operator runs with --metrics-secure=false.
	OperatorMetricsURL string
	// MetricsToken is a bearer token of the ServiceAccount MetricsScraper, bound
	// to the ClusterRole metrics-reader; also written to <Dir>/metrics.token.
	MetricsToken string
	// AuditLogPath is the API server's audit log (Options.Audit).
	AuditLogPath string

	controllerManager, tokenService, operator *Process
	// metricsCA trusts the certificate the operator serves metrics with.
	metricsCA *x509.CertPool
}

// Start brings everything up. On error, what was started is stopped.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	logf.SetLogger(logr.Discard()) // envtest logs nothing worth showing here
	cluster := &Cluster{opts: o}
	defer func() {
		if err != nil {
			cluster.Stop() // c itself is nil by then: "return nil, err"
		}
	}()
	for _, step := range []func(context.Context) error{
		cluster.startControlPlane, cluster.startTokenService, cluster.installConfig,
		cluster.writeOperatorKubeconfig, cluster.setUpMetricsReader,
		func(ctx context.Context) error { return cluster.StartOperator(ctx) },
	} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return cluster, nil
}

// startControlPlane starts etcd and kube-apiserver (with the audit log when
// Options.Audit asks for it) and writes the cluster-admin kubeconfig.
func (c *Cluster) startControlPlane(context.Context) error {
	c.logf("starting etcd and kube-apiserver")
	c.env = &envtest.Environment{BinaryAssetsDirectory: c.opts.Assets}
	if c.opts.Audit {
		policy := filepath.Join(c.opts.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return err
		}
		c.AuditLogPath = filepath.Join(c.opts.Dir, "audit.log")
		c.env.ControlPlane.GetAPIServer().Configure().
			Set("audit-policy-file", policy).Set("audit-log-path", c.AuditLogPath).
			Set("audit-log-format", "json").Set("audit-log-mode", "blocking").
			// The API server rotates its audit log at 100 MB unless told otherwise
			// (lumberjack's default), and a rotated log would leave readers that
			// count lines from a mark with nothing: make bench at 10,000 tokens
			// writes gigabytes. One file, never rotated.
			Set("audit-log-maxsize", "1000000").Set("audit-log-maxbackup", "0")
	}
	var err error
	if c.AdminConfig, err = c.env.Start(); err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	admin, err := c.env.AddUser(envtest.User{Name: "dev-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	c.AdminKubeconfig = filepath.Join(c.opts.Dir, "kubeconfig")
	return WriteKubeconfig(c.AdminKubeconfig, admin.Config(), "", "")
}

func (c *Cluster) startTokenService(ctx context.Context) error {
	addr := c.opts.TokenServiceAddr
	if addr == "" {
		addr = FreeAddr()
	}
	c.AdminKey = randomHex(24)
	c.TokenServiceURL = "http://" + addr
	c.logf("starting tokenservice at %s", c.TokenServiceURL)
	args := append([]string{"--listen", addr, "--data", filepath.Join(c.opts.Dir, "tokens.db")}, c.opts.TokenServiceArgs...)
	var err error
	c.tokenService, err = StartProcess(filepath.Join(c.opts.Dir, "tokenservice.log"), []string{"TOKENSERVICE_ADMIN_KEY=" + c.AdminKey}, c.opts.TokenService, args...)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, c.TokenServiceURL+"/v1/verify", WaitTimeout)
}

// installConfig applies config/default (CRDs, RBAC, the operator's namespace,
// the admission policy), starts kube-controller-manager and creates the admin
// key Secret of the TokenBackends.
func (c *Cluster) installConfig(ctx context.Context) error {
	c.logf("installing CRDs, RBAC and namespace from config/default")
	if _, err := c.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(c.opts.RepoRoot, "config", "default")); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "crd/apitokens.tokens.apitoken.dev", "crd/tokenbackends.tokens.apitoken.dev", KubectlTimeout(LongWait)); err != nil {
		return err
	}
	// After the CRDs: the garbage collector finds the resources to watch at
	// start and only every 30 s after, so started before them it would leave
	// ApiTokens unwatched for up to 30 s, then catch up on every owner it had
	// not seen at 10 GETs a second (a benchmark run measured it doing so during
	// the operator's convergence).
	c.logf("starting kube-controller-manager (garbage collection)")
	var err error
	c.controllerManager, err = StartProcess(filepath.Join(c.opts.Dir, "kube-controller-manager.log"), nil,
		filepath.Join(c.opts.Assets, "kube-controller-manager"), "--kubeconfig="+c.AdminKubeconfig,
		"--controllers=garbagecollector,namespace", "--leader-elect=false", "--secure-port=0")
	if err != nil {
		return err
	}
	_, err = c.Kubectl(ctx, "-n", OperatorNamespace, "create", "secret", "generic", AdminKeySecret, "--from-literal="+AdminKeyKey+"="+c.AdminKey)
	return err
}

// writeOperatorKubeconfig gives the operator the identity of its ServiceAccount,
// bound by config/rbac and nothing else.
func (c *Cluster) writeOperatorKubeconfig(ctx context.Context) error {
	token, err := c.Kubectl(ctx, "-n", OperatorNamespace, "create", "token", "apitoken-controller-manager", "--duration=48h")
	if err != nil {
		return err
	}
	c.OperatorKubeconfig = filepath.Join(c.opts.Dir, "operator.kubeconfig")
	return WriteKubeconfig(c.OperatorKubeconfig, c.AdminConfig, strings.TrimSpace(token), OperatorNamespace)
}

// StartOperator runs the operator binary as its ServiceAccount, with leader
// election, in OperatorNamespace as a Pod would (POD_NAMESPACE), serving metrics
// over HTTPS with a certificate of the framework's, and waits until it is ready.
func (c *Cluster) StartOperator(ctx context.Context, extraArgs ...string) error {
	metrics, probes := FreeAddr(), FreeAddr()
	args := append([]string{
		"--kubeconfig=" + c.OperatorKubeconfig, "--leader-elect", "--leader-election-namespace=" + OperatorNamespace,
		"--metrics-bind-address=" + metrics, "--health-probe-bind-address=" + probes, "--zap-log-level=debug",
	}, append(c.opts.OperatorArgs, extraArgs...)...)
	c.OperatorMetricsURL = "http://" + metrics + "/metrics"
	if metricsSecure(args) {
		certDir := filepath.Join(c.opts.Dir, "metrics-certs")
		var err error
		if c.metricsCA, err = writeMetricsCert(certDir); err != nil {
			return err
		}
		args = append(args, "--metrics-cert-path="+certDir)
		c.OperatorMetricsURL = "https://" + metrics + "/metrics"
	}
	c.logf("starting the operator (metrics %s)", c.OperatorMetricsURL)
	var err error
	c.operator, err = StartProcess(filepath.Join(c.opts.Dir, "operator.log"), []string{"POD_NAMESPACE=" + OperatorNamespace}, c.opts.Manager, args...)
	if err != nil {
		return err
	}
	// An operator that exits (a port it cannot bind, a bad flag) fails the
	// wait at once, and any failure comes with its log: a minute's wait for an
	// answer that could not come once ended a bench run saying neither what
	// nor why.
	if err := waitHTTP(c.operator.cancelOnExit(ctx, "the operator exited"), "http://"+probes+"/readyz", LongWait); err != nil {
		return fmt.Errorf("start the operator: %w; the end of its log:\n%s", err, Tail(c.OperatorLog(), 30))
	}
	return nil
}

// OperatorPID is the operator's process id.
func (c *Cluster) OperatorPID() int { return c.operator.cmd.Process.Pid }

// TokenServiceLogPath is tokenservice's request log (JSON lines).
func (c *Cluster) TokenServiceLogPath() string { return filepath.Join(c.opts.Dir, "tokenservice.log") }

// StopOperator stops the operator gracefully (SIGTERM).
func (c *Cluster) StopOperator() { c.operator.Stop() }

// KillOperator kills the operator at once (SIGKILL), as a crash would.
func (c *Cluster) KillOperator() { c.operator.Kill() }

// OperatorExited reports whether the operator process has ended.
func (c *Cluster) OperatorExited() bool { return c.operator.Exited() }

// OperatorLog returns everything the operator has logged.
func (c *Cluster) OperatorLog() string {
	b, _ := os.ReadFile(filepath.Join(c.opts.Dir, "operator.log"))
	return string(b)
}

// Kubectl runs kubectl as cluster admin and returns its standard output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.KubectlWithInput(ctx, "", args...)
}

// KubectlWithInput runs kubectl as cluster admin with stdin.
func (c *Cluster) KubectlWithInput(ctx context.Context, stdin string, args ...string) (string, error) {
	return Kubectl(ctx, c.opts.Assets, c.AdminKubeconfig, stdin, args...)
}

// Stop stops everything, the operator first.
func (c *Cluster) Stop() {
	for _, p := range []*Process{c.operator, c.tokenService, c.controllerManager} {
		p.Stop()
	}
	if c.env != nil {
		_ = c.env.Stop()
	}
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.Log, format+"\n", args...)
}
