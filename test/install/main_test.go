// Package install tests the ways the operator is installed and operated: the
// Helm chart (lint, render, values schema, server-side dry run, CRDs and RBAC
// equal to config/), the release manifest of make build-installer, config/prometheus
// and config/tokenservice, a scoped install (--watch-namespaces with the chart's
// Roles, the operator binary running as the chart's ServiceAccount), the
// binaries' --version, and the alerts and dashboard (promtool-style rule tests
// on Prometheus's own PromQL engine).
//
// One control plane (etcd + kube-apiserver) serves every test of the package;
// each test works in namespaces of its own.
package install

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/apitoken-dev/apitoken-operator/controllers"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var (
	repoRoot string
	// assets holds kubectl; kubeconfig is a cluster-admin kubeconfig of cp.
	assets, kubeconfig string
	cp                 *framework.ControlPlane
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	repoRoot = root
	if testing.Short() {
		return m.Run() // the tests that need the control plane skip themselves
	}
	if assets, err = framework.EnsureAssets(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if cp, err = framework.StartControlPlane(root, controllers.NewScheme()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cp.Stop()
	dir, err := os.MkdirTemp("", "apitoken-install")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, cp.Config, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// needCluster skips a test under -short, where no control plane runs.
func needCluster(t *testing.T) {
	t.Helper()
	if cp == nil {
		t.Skip("needs the control plane (not under -short)")
	}
}

// writeKubeconfig writes a kubeconfig for cfg's server: cfg's own credentials,
// or the bearer token when one is given.
func writeKubeconfig(path string, cfg *rest.Config, token string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	user := &clientcmdapi.AuthInfo{Token: token}
	if token == "" {
		user = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	}
	kc.AuthInfos["test"] = user
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// kubectl runs kubectl as cluster admin with stdin and returns its output.
func kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// mustKubectl is kubectl that fails the test on error.
func mustKubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectl(t.Context(), stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// createNamespaces creates namespaces for one test; they are left behind with
// the control plane (no kube-controller-manager deletes namespaces here).
func createNamespaces(t *testing.T, names ...string) {
	t.Helper()
	for _, ns := range names {
		mustKubectl(t, "", "create", "namespace", ns)
	}
}
