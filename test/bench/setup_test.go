package bench

// This file: flags, the cluster and its clients, the TokenBackend, and the
// helpers every phase uses.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var (
	nFlag       = flag.Int("n", 0, "ApiTokens to converge; 0 skips the benchmark")
	idleFlag    = flag.Duration("idle", 5*time.Minute, "idle window of the steady-state measurement")
	resyncFlag  = flag.Duration("resync", time.Minute, "resyncInterval of the TokenBackend during the benchmark")
	secretsFlag = flag.Int("secrets", 10000, "unrelated 10 KiB Secrets for the memory isolation measurement")
	outFlag     = flag.String("out", "bench.json", "where to write the figures as JSON")
	workers     = flag.Int("workers", 10, "concurrency of the baseline client (the operator's --max-concurrent-reconciles)")
	qpsFlag     = flag.Float64("qps", -1, "client-side QPS limit of the operator (--kube-api-qps) and of the measured clients, the baseline's included; -1 (the operator's default) sets none")
	stopAfter   = flag.String("stop-after", "", "the last phase to run (for a quick look at convergence, say); the figures so far are written and checked")
	skip        = flag.String("skip", "", "comma-separated phases not to run (a look at one phase while developing; figures that need a skipped phase are meaningless)")
	cpuWindow   = flag.Duration("cpu-window", time.Minute, "how long the operator's CPU at rest is measured, with the default resync")
	hydraNFlag  = flag.Int("hydra-n", 0, "ApiTokens of a TokenBackend of type Hydra (a real Ory Hydra, built by hack/hydra-binary.sh) to converge in the Hydra phases, which run first; 0 skips them")
	pairsFlag   = flag.Int("pairs", 3, "convergence pairs timed in turn: operator runs, each between two baseline runs (baseline, operator, baseline, ..., baseline); the median of their ratios has the target")
	profileFlag = flag.Bool("profile", false, "write CPU, allocation and heap profiles next to -out: the operator's and the API server's in the last convergence pair, the idle window and CPU at rest, and the plain client's over its whole life. The figures then include the profilers' own cost: the plain client's in every pair, the operator's in the last")
	warmUpFlag  = flag.Int("warm-up", 100, "ApiTokens converged and removed before each timed run, by the plain client and by the operator (restarted before each), so that both are measured running, not just started or idle; 0 times them as they are")
	pairNFlag   = flag.Int("pair-n", 0, "ApiTokens in each run of a convergence pair; 0 (or more than N) means N. With fewer, the operator converges the rest up to N after the last pair, for the later phases")
	enforce     = flag.Bool("enforce", true, "fail when a metric misses its target (the CI smoke run only checks that the harness works)")
)

var scheme = newScheme()

// newScheme is the scheme of every client of the benchmark, the plain
// client's included: the Kubernetes types and the operator's API.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(tokensv1alpha1.AddToScheme(s))
	return s
}

// probes is the number of latency samples per phase.
const probes = 100

// benchRun is what the phases share: the cluster, its clients, the report, and
// what one phase measures for a later one.
type benchRun struct {
	t         *testing.T
	ctx       context.Context
	c         *framework.Cluster
	pprofAddr string
	// admin and operator are measured: they have the operator's production
	// client settings (mustClient). setup prepares and cleans up around the
	// measurements, as fast as it can.
	admin, operator, setup client.WithWatch
	tb                     *tokensv1alpha1.TokenBackend // the TokenBackend of every phase but the throttled one
	r                      *report
	n                      int

	pairs               []convergencePair // convergence: the operator runs and the baseline runs around them
	rssBefore           int64             // convergence: RSS before the last operator run's warm-up, in KiB
	convStart           logMarks          // convergence: the last operator run's start
	lastRunEnd          logMarks          // convergence: its end
	topUpStart, convEnd logMarks          // convergence: the rest of N, after the operator's start again
	createLat, resetLat []probe           // idle latencies
	rssTokens, rssPeak  int64             // idle window: RSS with N tokens and its high-water mark, in KiB
	windowStart         time.Time         // idle window
	window              logMarks          // idle window
	restarted           time.Time         // restart: when the operator was started again
	leading             time.Time         // restart: when the restarted operator was seen to lead
	restartProfile      *pendingProfile   // restart: the new leader's first 10 s (-profile)
	atRestart           logMarks          // restart
	loadCreate          []probe           // latencies during resync
	loadReset           []probe           // latencies during resync
	rot                 rotationRun       // rotation: its ApiTokens and restart targets
	hy                  *hydraRun         // the Hydra phases: Hydra, its proxy and TokenBackend, and their measurements
	plain               *plainClient      // convergence: the baseline's plain client, a process of its own
}

// setUp builds the binaries, starts the cluster (stopped when the test ends),
// its clients and the Ready TokenBackend "default".
func setUp(t *testing.T) *benchRun {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	bin, err := framework.BuildBinaries(root, t.TempDir())
	mustDo(t, err)
	ctx := t.Context()
	pprofAddr := framework.FreeAddr()
	c, err := framework.Start(ctx, framework.Options{
		Dir: t.TempDir(), RepoRoot: root, Assets: os.Getenv("KUBEBUILDER_ASSETS"), Audit: true,
		TokenService: bin.TokenService, Manager: bin.Manager,
		// Production logging (info), and pprof for the profiles this run writes.
		// Metrics over plain http: the TokenReviews and SubjectAccessReviews of
		// secure scrapes would count among the operator's requests in the audit log.
		OperatorArgs: []string{"--zap-log-level=info", "--pprof-bind-address=" + pprofAddr, "--metrics-secure=false",
			fmt.Sprintf("--kube-api-qps=%g", *qpsFlag), fmt.Sprintf("--kube-api-burst=%d", burstFor(*qpsFlag))},
	})
	mustDo(t, err)
	t.Cleanup(c.Stop)
	b := &benchRun{
		t: t, ctx: ctx, c: c, pprofAddr: pprofAddr,
		admin:    mustClient(t, c.AdminKubeconfig, float32(*qpsFlag), burstFor(*qpsFlag)),
		operator: mustClient(t, c.OperatorKubeconfig, float32(*qpsFlag), burstFor(*qpsFlag)),
		setup:    mustClient(t, c.AdminKubeconfig, -1, 0),
		r:        &report{}, n: *nFlag,
	}
	b.tb = framework.TokenBackendFor("default", c.TokenServiceURL, *resyncFlag)
	b.tb.Spec.RateLimit = tokensv1alpha1.RateLimit{QPS: 5000, Burst: 5000}
	mustDo(t, framework.CreateTokenBackend(ctx, b.admin, b.tb, framework.LongWait))
	return b
}

// waitLeader waits until the operator reports that it leads.
func (b *benchRun) waitLeader() {
	framework.Eventually(b.t, "the restarted operator leads", 2*framework.LongWait, func() error {
		if b.c.OperatorExited() {
			b.t.Fatalf("the operator exited; the end of its log:\n%s", lastLines(b.c.OperatorLog(), 40))
		}
		body, err := operatorMetrics(b.c.OperatorMetricsURL)
		if err != nil {
			return err
		}
		if !strings.Contains(body, `leader_election_master_status{name="apitoken-operator.tokens.apitoken.dev"} 1`) {
			return fmt.Errorf("not the leader yet")
		}
		return nil
	})
}

// lastLines is the last n lines of text.
func lastLines(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// marks are the current ends of the audit log and of tokenservice's log.
func (b *benchRun) marks() logMarks {
	return logMarks{audit: lineCount(b.t, b.c.AuditLogPath), ts: lineCount(b.t, b.c.TokenServiceLogPath())}
}

// profile fetches /debug/pprof/<what> from the operator in the background and
// writes it next to the JSON figures; its wait logs its top functions. Without
// -profile it does nothing (nil).
func (b *benchRun) profile(what, file string) *pendingProfile {
	if !*profileFlag {
		return nil
	}
	return fetchProfile(b.t, http.DefaultClient, "http://"+b.pprofAddr+"/debug/pprof/"+what, file)
}

// apiServerProfile is profile for the API server (its /debug/pprof, as admin):
// the work the operator causes there, which the operator's own profile does not
// show.
func (b *benchRun) apiServerProfile(what, file string) *pendingProfile {
	if !*profileFlag {
		return nil
	}
	httpClient, err := rest.HTTPClientFor(b.c.AdminConfig)
	mustDo(b.t, err)
	return fetchProfile(b.t, httpClient, strings.TrimSuffix(b.c.AdminConfig.Host, "/")+"/debug/pprof/"+what, file)
}

// pendingProfile is a profile being fetched into a file next to -out.
type pendingProfile struct {
	t     *testing.T
	path  string
	saved chan bool
}

func fetchProfile(t *testing.T, httpClient *http.Client, url, file string) *pendingProfile {
	p := &pendingProfile{t: t, path: filepath.Join(filepath.Dir(*outFlag), "bench-"+file), saved: make(chan bool, 1)}
	go func() {
		resp, err := httpClient.Get(url)
		if err != nil {
			t.Logf("profile %s: %v", file, err)
			p.saved <- false
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Logf("profile %s: %s: %.200s", file, resp.Status, data)
			p.saved <- false
			return
		}
		if err := os.WriteFile(p.path, data, 0o644); err != nil {
			t.Logf("profile %s: %v", file, err)
			p.saved <- false
			return
		}
		p.saved <- true
	}()
	return p
}

// wait waits for the profile and logs its top functions. Callers wait after
// what they measure: go tool pprof is a process of its own, whose CPU a timed
// run would count (and compete with).
func (p *pendingProfile) wait() {
	if p == nil || !<-p.saved {
		return
	}
	top, _ := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", p.path).CombinedOutput()
	p.t.Logf("profile %s:\n%s", p.path, top)
}

// burstFor is the burst that goes with a QPS limit: twice it, as the operator's
// flags have it by default (unused without a limit).
func burstFor(qps float64) int { return max(1, int(2*qps)) }

// mustClient builds a client; the measured ones have the operator's client-side
// limit (-qps; none by default, as the operator). A negative qps sets no limit.
func mustClient(t *testing.T, kubeconfig string, qps float32, burst int) client.WithWatch {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// The operator's production settings: its client limit, and no gzip (its
	// --kube-api-compression=false).
	cfg.QPS, cfg.Burst = qps, burst
	cfg.DisableCompression = true
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

func apiToken(ns, name string) *tokensv1alpha1.ApiToken {
	return &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       tokensv1alpha1.ApiTokenSpec{PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}},
	}
}
