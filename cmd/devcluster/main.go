// Command devcluster is make dev: a local control plane, tokenservice, Ory Hydra
// and the operator from real processes, with the samples applied. Ctrl-C stops
// it all. It is dev tooling built on test/framework (the same Cluster the e2e
// tests use) and test/framework/hydraserver.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/hydraserver"
)

// The Hydra samples, applied after config/samples (whose kustomization leaves
// them out: the tests that apply it run no Hydra), and the ports they name.
const (
	hydraBackendSample  = "tokens_v1alpha1_tokenbackend_hydra.yaml"
	hydraApiTokenSample = "tokens_v1alpha1_apitoken_hydra.yaml"
	hydraSampleToken    = "reports-client"
	hydraAdminPort      = 4445
	hydraPublicPort     = 4444
)

type options struct {
	dir, tokenServiceAddr           string
	hydraBinary                     string
	hydraAdminAddr, hydraPublicAddr string
	hydraAdminPort, hydraPublicPort int
}

func main() {
	var o options
	flag.StringVar(&o.dir, "dir", ".dev", "directory for kubeconfigs, logs and the tokenservice database")
	flag.StringVar(&o.tokenServiceAddr, "tokenservice-listen", "127.0.0.1:18080", "tokenservice address (the sample TokenBackend points here)")
	flag.StringVar(&o.hydraBinary, "hydra", os.Getenv("HYDRA_BINARY"), "the Ory Hydra binary (default $HYDRA_BINARY, else built by hack/hydra-binary.sh)")
	flag.StringVar(&o.hydraAdminAddr, "hydra-admin-listen", "127.0.0.1:"+strconv.Itoa(hydraAdminPort), "Hydra's admin API address, on loopback (the TokenBackend hydra's url)")
	flag.StringVar(&o.hydraPublicAddr, "hydra-public-listen", "127.0.0.1:"+strconv.Itoa(hydraPublicPort), "Hydra's public address, on loopback (its token endpoint is the TokenBackend hydra's tokenURL)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

// loopbackPort reads the port of a 127.0.0.1 address: Hydra is served on
// loopback only.
func loopbackPort(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		return 0, fmt.Errorf("%q: want 127.0.0.1:<port>", addr)
	}
	return strconv.Atoi(port)
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if o.hydraAdminPort, err = loopbackPort(o.hydraAdminAddr); err != nil {
		return fmt.Errorf("--hydra-admin-listen %w", err)
	}
	if o.hydraPublicPort, err = loopbackPort(o.hydraPublicAddr); err != nil {
		return fmt.Errorf("--hydra-public-listen %w", err)
	}
	if o.hydraBinary == "" {
		if o.hydraBinary, err = hydraserver.Binary(root); err != nil {
			return err
		}
	}
	dir, _ := filepath.Abs(o.dir)
	_ = os.RemoveAll(dir) // a fresh cluster each time: etcd is in memory, so is everything else
	start := time.Now()
	c, err := framework.Start(ctx, framework.Options{
		Dir: dir, RepoRoot: root, Assets: os.Getenv("KUBEBUILDER_ASSETS"),
		TokenService: filepath.Join(root, "bin", "tokenservice"), Manager: filepath.Join(root, "bin", "manager"),
		TokenServiceAddr: o.tokenServiceAddr, Log: os.Stdout,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\nstopping the operator, tokenservice, Hydra and the control plane")
		c.Stop()
	}()
	// Hydra keeps its clients in memory, like everything else here: make dev
	// starts afresh each time.
	fmt.Printf("starting Ory Hydra (%s): admin API %s, public %s\n", o.hydraBinary, o.hydraAdminAddr, o.hydraPublicAddr)
	hydra, err := hydraserver.StartWith(o.hydraBinary, "memory", hydraserver.Config{
		AdminPort: o.hydraAdminPort, PublicPort: o.hydraPublicPort, LogPath: filepath.Join(dir, "hydra.log"),
	})
	if err != nil {
		return fmt.Errorf("start Hydra: %w", err)
	}
	defer hydra.Stop()

	fmt.Println("applying config/samples")
	if _, err := c.Kubectl(ctx, "apply", "-k", filepath.Join(root, "config", "samples")); err != nil {
		return err
	}
	if err := applyHydraSamples(ctx, c, root, hydra); err != nil {
		return err
	}
	for _, obj := range []string{"apitoken/reporting-etl", "tokenbackend/hydra", "apitoken/" + hydraSampleToken} {
		if _, err := c.Kubectl(ctx, "wait", "--for=condition=Ready", obj, "--timeout=60s"); err != nil {
			return err
		}
	}
	printInstructions(c, dir, hydra, time.Since(start))
	<-ctx.Done()
	return nil
}

// applyHydraSamples applies the Hydra samples, with the TokenBackend pointed at
// this Hydra when its addresses are not the samples' defaults.
func applyHydraSamples(ctx context.Context, c *framework.Cluster, root string, hydra *hydraserver.Server) error {
	fmt.Printf("applying config/samples/%s and %s\n", hydraBackendSample, hydraApiTokenSample)
	var manifests []string
	for _, file := range []string{hydraBackendSample, hydraApiTokenSample} {
		data, err := os.ReadFile(filepath.Join(root, "config", "samples", file))
		if err != nil {
			return err
		}
		manifests = append(manifests, string(data))
	}
	all := strings.NewReplacer(
		"http://127.0.0.1:"+strconv.Itoa(hydraAdminPort), hydra.AdminURL,
		"http://127.0.0.1:"+strconv.Itoa(hydraPublicPort), hydra.PublicURL,
	).Replace(strings.Join(manifests, "\n---\n"))
	_, err := c.KubectlWithInput(ctx, all, "apply", "-f", "-")
	return err
}

func printInstructions(c *framework.Cluster, dir string, hydra *hydraserver.Server, took time.Duration) {
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	secretKey := func(key string) string {
		return fmt.Sprintf(`$(kubectl get secret %s -o jsonpath='{.data.%s}' | base64 -d)`, hydraSampleToken, key)
	}
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

  Ory Hydra: admin API %s, token endpoint %s (TokenBackend hydra)
  The ApiToken %s is an OAuth2 client; ask for an access token with its Secret:
  curl -s -u "%s:%s" -d grant_type=client_credentials -d scope=reports:read "%s"; echo
  README.md, "Ory Hydra: OAuth2 clients", goes on from there (reset, rotation).

  metrics (a token of a ServiceAccount bound to apitoken-metrics-reader):
  curl -sk -H "Authorization: Bearer $(cat %s/metrics.token)" %s
  logs: %s/{operator,tokenservice,hydra,kube-controller-manager}.log

Press Ctrl-C to stop everything.
`, took.Round(time.Second), c.AdminKubeconfig, kubectl, c.TokenServiceURL, c.AdminKey, c.TokenServiceURL,
		hydra.AdminURL, hydra.TokenURL, hydraSampleToken, secretKey("clientId"), secretKey("clientSecret"), secretKey("tokenUrl"),
		dir, c.OperatorMetricsURL, dir)
}
