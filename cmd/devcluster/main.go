// Command devcluster is make dev: a local control plane, tokenservice and the
// operator from real processes, with the samples applied. Ctrl-C stops it all.
// It is dev tooling built on test/framework (the same Cluster the e2e tests use).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

func main() {
	dir := flag.String("dir", ".dev", "directory for kubeconfigs, logs and the tokenservice database")
	tokenServiceAddr := flag.String("tokenservice-listen", "127.0.0.1:18080", "tokenservice address (the sample TokenBackend points here)")
	flag.Parse()
	if err := run(*dir, *tokenServiceAddr); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

func run(dir, tokenServiceAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	_ = os.RemoveAll(dir) // a fresh cluster each time: etcd is in memory, so is everything else
	start := time.Now()
	c, err := framework.Start(ctx, framework.Options{
		Dir: dir, RepoRoot: root, Assets: os.Getenv("KUBEBUILDER_ASSETS"),
		TokenService: filepath.Join(root, "bin", "tokenservice"), Manager: filepath.Join(root, "bin", "manager"),
		TokenServiceAddr: tokenServiceAddr, Log: os.Stdout,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\nstopping the operator, tokenservice and the control plane")
		c.Stop()
	}()
	fmt.Println("applying config/samples")
	if _, err := c.Kubectl(ctx, "apply", "-k", filepath.Join(root, "config", "samples")); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Ready", "apitoken/reporting-etl", "--timeout=60s"); err != nil {
		return err
	}
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	fmt.Printf(`
apitoken-operator is running (up in %s). In another shell:

  export KUBECONFIG=%s
  alias kubectl=%s

  kubectl get apitokens,tokenbackends
  kubectl get secret reporting-etl -o jsonpath='{.data.authToken}' | base64 -d; echo
  kubectl annotate apitoken reporting-etl tokens.apitoken.dev/reset="$(date +%%s)" --overwrite   # reset
  kubectl patch apitoken reporting-etl --type merge -p '{"spec":{"disabled":true}}'             # disable
  kubectl describe apitoken reporting-etl                                                       # conditions, events
  kubectl delete apitoken reporting-etl

  tokenservice: %s  (admin key: %s)
  curl -u "$SID:$TOKEN" '%s/v1/verify?scope=reports:read'
  metrics (a token of a ServiceAccount bound to apitoken-metrics-reader):
  curl -sk -H "Authorization: Bearer $(cat %s/metrics.token)" %s
  logs: %s/{operator,tokenservice,kube-controller-manager}.log

Press Ctrl-C to stop everything.
`, time.Since(start).Round(time.Second), c.AdminKubeconfig, kubectl, c.TokenServiceURL, c.AdminKey, c.TokenServiceURL, dir, c.OperatorMetricsURL, dir)
	<-ctx.Done()
	return nil
}
