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
	"path/filepath"
	"testing"

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
	if err := framework.WriteKubeconfig(kubeconfig, cp.Config, "", ""); err != nil {
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

// kubectl runs kubectl as cluster admin with stdin and returns its output.
func kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	return framework.Kubectl(ctx, assets, kubeconfig, stdin, args...)
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
