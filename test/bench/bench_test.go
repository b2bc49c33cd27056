// Package bench is make bench: the operator binary, running as its
// ServiceAccount with its production client settings, measured against the
// physical floor on one machine. It prints one line per metric and writes JSON.
//
//	make bench                # N = 2000, idle window 5 min
//	make bench BENCH_N=100 BENCH_IDLE=30s BENCH_SECRETS=500   # the CI smoke run
package bench

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/internal/devcluster"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

var (
	nFlag       = flag.Int("n", 0, "ApiTokens to converge; 0 skips the benchmark")
	idleFlag    = flag.Duration("idle", 5*time.Minute, "idle window of the steady-state measurement")
	resyncFlag  = flag.Duration("resync", time.Minute, "resyncInterval of the TokenBackend during the benchmark")
	secretsFlag = flag.Int("secrets", 10000, "unrelated 10 KiB Secrets for the memory isolation measurement")
	outFlag     = flag.String("out", "bench.json", "where to write the figures as JSON")
	workers     = flag.Int("workers", 10, "concurrency of the baseline client (the operator's --max-concurrent-reconciles)")
	enforce     = flag.Bool("enforce", true, "fail when a metric misses its target (the CI smoke run only checks that the harness works)")
)

type metric struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target string  `json:"target"`
	Pass   *bool   `json:"pass,omitempty"`
}

type report struct {
	mu      sync.Mutex
	metrics []metric
}

func (r *report) add(name string, value float64, unit, target string, pass *bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, metric{name, value, unit, target, pass})
	verdict := "info"
	if pass != nil {
		verdict = map[bool]string{true: "PASS", false: "FAIL"}[*pass]
	}
	fmt.Printf("%-44s %12.3f %-10s target %-12s %s\n", name, value, unit, target, verdict)
}

func le(v, limit float64) *bool { b := v <= limit; return &b }
func ge(v, limit float64) *bool { b := v >= limit; return &b }

var scheme = runtime.NewScheme()

func TestBench(t *testing.T) {
	if *nFlag <= 0 {
		t.Skip("make bench runs this (-n N)")
	}
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tokensv1alpha1.AddToScheme(scheme))
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	bin := t.TempDir()
	for name, pkg := range map[string]string{"manager": ".", "tokenservice": "./cmd/tokenservice"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, name), pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	ctx := t.Context()
	c, err := devcluster.Start(ctx, devcluster.Options{
		Dir: t.TempDir(), RepoRoot: root, Assets: assets, Audit: true,
		TokenService: filepath.Join(bin, "tokenservice"), Manager: filepath.Join(bin, "manager"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	admin := mustClient(t, c.AdminKubeconfig, 100, 200)
	operator := mustClient(t, c.OperatorKubeconfig, 100, 200)
	// setup prepares and cleans up around the measurements, as fast as it can.
	setup := mustClient(t, c.AdminKubeconfig, 2000, 4000)
	be, _ := backend.New(backend.Options{URL: c.TokenServiceURL, AdminKey: c.AdminKey})
	r := &report{}
	n := *nFlag

	tb := &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: tokensv1alpha1.TokenBackendSpec{
			URL:                  c.TokenServiceURL,
			CredentialsSecretRef: tokensv1alpha1.SecretKeyReference{Namespace: devcluster.OperatorNamespace, Name: "tokenservice-admin", Key: "apiKey"},
			RateLimit:            tokensv1alpha1.RateLimit{QPS: 5000, Burst: 5000},
			ResyncInterval:       &metav1.Duration{Duration: *resyncFlag},
		},
	}
	mustDo(t, admin.Create(ctx, tb))
	waitFor(t, "TokenBackend ready", time.Minute, func() bool {
		got := &tokensv1alpha1.TokenBackend{}
		return admin.Get(ctx, client.ObjectKey{Name: "default"}, got) == nil && meta.IsStatusConditionTrue(got.Status.Conditions, "Ready")
	})

	// Baseline: the minimal work for N tokens by a plain client, with the operator
	// stopped: backend create, ApiToken create, finalizer patch, Secret create,
	// status patch, at the operator's concurrency and client settings.
	c.StopOperator()
	mustDo(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "baseline"}}))
	baseline := timeIt(func() { runBaseline(t, n, admin, operator, be) })
	cleanupBaseline(t, n, setup)

	// Convergence of the operator.
	mustDo(t, c.StartOperator(ctx))
	mustDo(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}))
	time.Sleep(20 * time.Second) // leader election after the restart; then measure from a quiet start
	rssBefore := rss(t, c.OperatorPID())
	auditStart, tsStart := lineCount(t, c.AuditLogPath), lineCount(t, c.TokenServiceLogPath())
	start := time.Now()
	createTokens(t, admin, "bench", "t", n)
	waitAllReady(t, admin, "bench", n, 15*time.Minute)
	converged := time.Since(start)
	r.add("convergence time", converged.Seconds(), "s", "", nil)
	r.add("baseline time", baseline.Seconds(), "s", "", nil)
	r.add("convergence / baseline", converged.Seconds()/baseline.Seconds(), "ratio", "<= 1.25", le(converged.Seconds()/baseline.Seconds(), 1.25))

	k8sCalls := auditCounts(t, c.AuditLogPath, auditStart)
	writes, conflicts, total := 0, 0, 0
	events := 0
	for key, count := range k8sCalls {
		if strings.Contains(key, "leases") {
			continue
		}
		if strings.Contains(key, " events ") {
			events += count // the Created events: a feature, reported on their own
			continue
		}
		total += count
		if strings.HasPrefix(key, "create") || strings.HasPrefix(key, "update") || strings.HasPrefix(key, "patch") || strings.HasPrefix(key, "delete") {
			writes += count
		}
		if strings.HasSuffix(key, " 409") {
			conflicts += count
		}
	}
	t.Logf("Kubernetes requests during convergence: %v", k8sCalls)
	minimal := float64(3 * n)
	r.add("API amplification", float64(total)/minimal, "ratio", "<= 1.10", le(float64(total)/minimal, 1.10))
	r.add("events created per token (separate)", float64(events)/float64(n), "events", "", nil)
	r.add("API 409 conflicts / writes", 100*float64(conflicts)/float64(max(1, writes)), "%", "< 0.5", le(100*float64(conflicts)/float64(max(1, writes)), 0.5))
	backendCalls := tokenServiceCounts(t, c.TokenServiceLogPath(), tsStart)
	t.Logf("backend calls during convergence: %v", backendCalls)
	r.add("backend calls per token (convergence)", float64(sumCounts(backendCalls))/float64(n), "calls", "<= 1.02", le(float64(sumCounts(backendCalls))/float64(n), 1.02))

	// Latency on an idle operator.
	createLat, resetLat := latencies(t, admin, "bench", "idle", 50)
	report4(r, "idle", createLat, resetLat, 1.0)

	// Steady state: an idle window with several resyncs, then a restart.
	auditStart, tsStart = lineCount(t, c.AuditLogPath), lineCount(t, c.TokenServiceLogPath())
	windowStart := time.Now()
	time.Sleep(*idleFlag)
	c.KillOperator()
	mustDo(t, c.StartOperator(ctx))
	waitLeader(t, c.OperatorMetricsURL) // the killed process's lease must expire first
	restartedAt := time.Now()
	// Latency while the restarted operator re-checks every token.
	loadCreate, loadReset := latencies(t, admin, "bench", "load", 20)
	report4(r, "during resync after restart", loadCreate, loadReset, 2*max(p(createLat, 99), 0.001))
	time.Sleep(max(0, 30*time.Second-time.Since(restartedAt)))
	idleK8s := auditCounts(t, c.AuditLogPath, auditStart)
	idleWrites, leaseWrites := 0, 0
	for key, count := range idleK8s {
		verb := strings.Fields(key)[0]
		if verb == "get" || verb == "list" || verb == "watch" {
			continue
		}
		if strings.Contains(key, "leases") {
			leaseWrites += count
			continue
		}
		idleWrites += count
	}
	// The latency probes above wrote their own objects; their writes are excluded
	// by resource name in idleTokenWrites.
	tokenWrites := idleTokenWrites(t, c.AuditLogPath, auditStart)
	t.Logf("requests in the idle window and restart: %v", idleK8s)
	r.add("steady-state Kubernetes writes", float64(tokenWrites), "writes", "= 0", le(float64(tokenWrites), 0))
	r.add("leader-election lease writes (separate)", float64(leaseWrites), "writes", "", nil)
	idleBackend := tokenServiceCounts(t, c.TokenServiceLogPath(), tsStart)
	gets, notModified := 0, 0
	for key, count := range idleBackend {
		if strings.HasPrefix(key, "GET /v1/tokens/{sid} ") {
			gets += count
			if strings.HasSuffix(key, " 304") {
				notModified += count
			}
		}
	}
	// One conditional read per token per resync interval over the window, plus
	// the one check of each token by the restarted process.
	resyncs := time.Since(windowStart).Seconds()/resyncFlag.Seconds() + 1
	tokens := float64(n + 50) // the bench tokens and the idle latency probes
	r.add("steady-state backend reads / (tokens x resyncs)", float64(gets)/(tokens*resyncs), "ratio", "<= 1.1", le(float64(gets)/(tokens*resyncs), 1.1))
	r.add("steady-state reads answered 304", 100*float64(notModified)/float64(max(1, gets)), "%", ">= 99", ge(100*float64(notModified)/float64(max(1, gets)), 99))

	// Memory isolation: unrelated Secrets must not grow the operator.
	rssTokens := rss(t, c.OperatorPID())
	createUnrelatedSecrets(t, setup, *secretsFlag)
	time.Sleep(*resyncFlag + 5*time.Second) // a full resync of every token with the Secrets present
	peak := peakRSS(t, c.OperatorPID())
	r.add("RSS with N tokens", float64(rssTokens)/1024, "MiB", "", nil)
	r.add("RSS per token", float64(rssTokens-rssBefore)/float64(n), "KiB", "", nil)
	r.add("peak RSS with unrelated Secrets / without", float64(peak)/float64(rssTokens), "ratio", "<= 1.10", le(float64(peak)/float64(rssTokens), 1.10))

	out, _ := json.MarshalIndent(map[string]any{"n": n, "idle": idleFlag.String(), "resync": resyncFlag.String(), "secrets": *secretsFlag, "metrics": r.metrics}, "", "  ")
	if err := os.WriteFile(*outFlag, out, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.metrics {
		if *enforce && m.Pass != nil && !*m.Pass {
			t.Errorf("%s = %.3f, target %s", m.Name, m.Value, m.Target)
		}
	}
}

func report4(r *report, phase string, create, reset []time.Duration, limit float64) {
	for _, q := range []int{50, 99} {
		v := p(create, q)
		r.add(fmt.Sprintf("create->Ready p%d (%s)", q, phase), v, "s", fmt.Sprintf("<= %.3g", limit), le(v, limit))
	}
	for _, q := range []int{50, 99} {
		v := p(reset, q)
		r.add(fmt.Sprintf("reset->Secret p%d (%s)", q, phase), v, "s", fmt.Sprintf("<= %.3g", limit), le(v, limit))
	}
}

func p(d []time.Duration, q int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*q+99)/100-1)
	return s[max(0, i)].Seconds()
}

// mustClient builds a client; the measured ones use the operator's production
// defaults (QPS 100, burst 200).
func mustClient(t *testing.T, kubeconfig string, qps float32, burst int) client.Client {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	c, err := client.New(cfg, client.Options{Scheme: scheme})
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

func timeIt(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
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

func runBaseline(t *testing.T, n int, admin, operator client.Client, be *backend.Client) {
	ctx := t.Context()
	parallel(n, *workers, func(i int) {
		at := apiToken("baseline", fmt.Sprintf("b%d", i))
		if err := admin.Create(ctx, at); err != nil {
			t.Error(err)
			return
		}
		tok, creds, err := be.Create(ctx, "baseline/"+string(at.UID), backend.CreateRequest{Name: at.Name, PrimaryContact: "ops@example.com",
			Scopes: []string{"reports:read"}, State: "Enabled", ExternalID: string(at.UID)})
		if err != nil {
			t.Error(err)
			return
		}
		patch := client.MergeFrom(at.DeepCopy())
		at.Finalizers = []string{"bench.apitoken.dev/baseline"}
		if err := operator.Patch(ctx, at, patch); err != nil {
			t.Error(err)
			return
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: at.Name, Namespace: at.Namespace,
			Labels: map[string]string{tokensv1alpha1.ManagedByLabel: "bench-baseline"}},
			Data: map[string][]byte{"accountSid": []byte(tok.SID), "authToken": []byte(creds.AuthToken.Reveal())}}
		if err := operator.Create(ctx, s); err != nil {
			t.Error(err)
			return
		}
		statusPatch := client.MergeFrom(at.DeepCopy())
		at.Status.AccountSID = tok.SID
		meta.SetStatusCondition(&at.Status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", Message: "baseline"})
		if err := operator.Status().Patch(ctx, at, statusPatch); err != nil {
			t.Error(err)
		}
	})
}

func cleanupBaseline(t *testing.T, n int, admin client.Client) {
	ctx := t.Context()
	parallel(n, 20, func(i int) {
		at := &tokensv1alpha1.ApiToken{}
		if admin.Get(ctx, client.ObjectKey{Namespace: "baseline", Name: fmt.Sprintf("b%d", i)}, at) != nil {
			return
		}
		patch := client.MergeFrom(at.DeepCopy())
		at.Finalizers = nil
		_ = admin.Patch(ctx, at, patch)
		_ = admin.Delete(ctx, at)
		_ = admin.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "baseline", Name: at.Name}})
	})
}

func createTokens(t *testing.T, admin client.Client, ns, prefix string, n int) {
	parallel(n, 20, func(i int) {
		if err := admin.Create(t.Context(), apiToken(ns, fmt.Sprintf("%s%d", prefix, i))); err != nil {
			t.Error(err)
		}
	})
}

func waitAllReady(t *testing.T, admin client.Client, ns string, n int, timeout time.Duration) {
	waitFor(t, fmt.Sprintf("%d ApiTokens Ready", n), timeout, func() bool {
		list := &tokensv1alpha1.ApiTokenList{}
		if admin.List(t.Context(), list, client.InNamespace(ns)) != nil {
			return false
		}
		ready := 0
		for _, at := range list.Items {
			if meta.IsStatusConditionTrue(at.Status.Conditions, "Ready") && at.Status.SecretName != "" {
				ready++
			}
		}
		return ready >= n
	})
}

// latencies creates k tokens one at a time and times create->Ready, then resets
// each and times annotation->Secret rewritten.
func latencies(t *testing.T, admin client.Client, ns, prefix string, k int) (create, reset []time.Duration) {
	ctx := t.Context()
	for i := range k {
		at := apiToken(ns, fmt.Sprintf("%s-%d", prefix, i))
		start := time.Now()
		mustDo(t, admin.Create(ctx, at))
		waitFor(t, "latency probe Ready", time.Minute, func() bool {
			got := &tokensv1alpha1.ApiToken{}
			return admin.Get(ctx, client.ObjectKeyFromObject(at), got) == nil && meta.IsStatusConditionTrue(got.Status.Conditions, "Ready") && got.Status.SecretName != ""
		})
		create = append(create, time.Since(start))
	}
	for i := range k {
		key := client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("%s-%d", prefix, i)}
		before := &corev1.Secret{}
		mustDo(t, admin.Get(ctx, key, before))
		at := &tokensv1alpha1.ApiToken{}
		mustDo(t, admin.Get(ctx, key, at))
		patch := client.MergeFrom(at.DeepCopy())
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "bench"}
		start := time.Now()
		mustDo(t, admin.Patch(ctx, at, patch))
		waitFor(t, "latency probe reset", time.Minute, func() bool {
			s := &corev1.Secret{}
			return admin.Get(ctx, key, s) == nil && string(s.Data["authToken"]) != string(before.Data["authToken"])
		})
		reset = append(reset, time.Since(start))
	}
	return create, reset
}

func createUnrelatedSecrets(t *testing.T, admin client.Client, count int) {
	mustDo(t, admin.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}}))
	payload := []byte(strings.Repeat("x", 10*1024))
	parallel(count, 20, func(i int) {
		_ = admin.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i), Namespace: "unrelated"},
			Data: map[string][]byte{"blob": payload}})
	})
}

// rss and peakRSS read the operator's resident set (VmRSS) and its high-water
// mark (VmHWM) in KiB.
func rss(t *testing.T, pid int) int64     { return procStatus(t, pid, "VmRSS:") }
func peakRSS(t *testing.T, pid int) int64 { return procStatus(t, pid, "VmHWM:") }

func procStatus(t *testing.T, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

func lineCount(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		n++
	}
	return n
}

// eachLine calls f for each line after the first skip lines.
func eachLine(t *testing.T, path string, skip int, f func([]byte)) {
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for i := 0; sc.Scan(); i++ {
		if i >= skip {
			f(sc.Bytes())
		}
	}
}

type auditEvent struct {
	Verb      string `json:"verb"`
	Stage     string `json:"stage"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// auditCounts counts the operator's requests by "verb resource[/subresource] code".
func auditCounts(t *testing.T, path string, skip int) map[string]int {
	out := map[string]int{}
	eachLine(t, path, skip, func(line []byte) {
		var e auditEvent
		if json.Unmarshal(line, &e) != nil || e.Stage != "ResponseComplete" {
			return
		}
		res := e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			res += "/" + e.ObjectRef.Subresource
		}
		out[fmt.Sprintf("%s %s %d", e.Verb, res, e.ResponseStatus.Code)]++
	})
	return out
}

// idleTokenWrites counts the operator's writes to objects other than the latency
// probes and leases.
func idleTokenWrites(t *testing.T, path string, skip int) int {
	n := 0
	eachLine(t, path, skip, func(line []byte) {
		var e auditEvent
		if json.Unmarshal(line, &e) != nil || e.Stage != "ResponseComplete" {
			return
		}
		switch e.Verb {
		case "get", "list", "watch":
			return
		}
		if e.ObjectRef.Resource == "leases" || e.ObjectRef.Resource == "events" || strings.HasPrefix(e.ObjectRef.Name, "load-") {
			return
		}
		n++
	})
	return n
}

// tokenServiceCounts counts tokenservice's requests by "METHOD path status".
func tokenServiceCounts(t *testing.T, path string, skip int) map[string]int {
	out := map[string]int{}
	eachLine(t, path, skip, func(line []byte) {
		var e struct {
			Msg    string `json:"msg"`
			Method string `json:"method"`
			Path   string `json:"path"`
			Status int    `json:"status"`
		}
		if json.Unmarshal(line, &e) != nil || e.Msg != "request" {
			return
		}
		p := e.Path
		if strings.HasPrefix(p, "/v1/tokens/") {
			rest := strings.SplitN(strings.TrimPrefix(p, "/v1/tokens/"), "/", 2)
			p = "/v1/tokens/{sid}"
			if len(rest) == 2 {
				p += "/" + rest[1]
			}
		}
		out[fmt.Sprintf("%s %s %d", e.Method, p, e.Status)]++
	})
	return out
}

func sumCounts(m map[string]int) int {
	n := 0
	for k, v := range m {
		if !strings.Contains(k, "/v1/catalog") {
			n += v
		}
	}
	return n
}

// waitLeader waits until the operator reports that it leads.
func waitLeader(t *testing.T, metricsURL string) {
	waitFor(t, "the restarted operator leads", 2*time.Minute, func() bool {
		resp, err := http.Get(metricsURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `leader_election_master_status{name="apitoken-operator.tokens.apitoken.dev"} 1`)
	})
}
