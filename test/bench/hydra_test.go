package bench

// This file: the Hydra phases. A real Ory Hydra behind a counting proxy, a
// TokenBackend of type Hydra, and -hydra-n ApiTokens: the operator's
// convergence against a plain client making the same Hydra and Kubernetes calls,
// its Hydra calls per token at creation and at rest, and its Kubernetes writes
// at rest. They run first, and leave nothing behind for the other phases.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/controllers"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend/hydra"
	"github.com/apitoken-dev/apitoken-operator/pkg/backends"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

const (
	// pendingSecretType and sourceSecretType are the types of the Secrets the
	// operator keeps beside the delivered one for a Hydra token: the secret
	// written ahead of the create, and its only copy of the secret.
	pendingSecretType corev1.SecretType = "tokens.apitoken.dev/credentials-pending"
	sourceSecretType  corev1.SecretType = "tokens.apitoken.dev/credentials-source"

	hydraBackendName = "hydra"
	hydraNS          = "hydra"
	hydraBaselineNS  = "hydra-baseline"
)

// hydraRounds is how many times the baseline and the operator's convergence
// are timed, alternately; the best time of each is compared. A round of 500
// tokens lasts about ten seconds, and on a shared two-core machine what other
// processes do during one of them moves a single ratio by 20-30%.
const hydraRounds = 2

// hydraRun is what the Hydra phases share.
type hydraRun struct {
	n      int
	server *framework.Hydra
	proxy  *hydraProxy
	tb     *tokensv1alpha1.TokenBackend

	baselineTook, convergenceTook []time.Duration // per round
	baselineK8sCalls              int             // the last baseline's Kubernetes requests
	convStart, convEnd            logMarks        // the last convergence, in the audit log
	convEndAt                     time.Time       // and when it ended
	hydraAtConvStart              map[string]int  // Hydra's requests so far, then
	hydraAtConvEnd                map[string]int
}

// hydraPhases are the Hydra phases, in order.
func (b *benchRun) hydraPhases() []benchPhase {
	return []benchPhase{
		{"hydraConvergence", b.hydraConvergence}, // a plain client and the operator converge N Hydra tokens, alternately
		{"hydraAtRest", b.hydraAtRest},           // left alone for a resync: Hydra reads, no Kubernetes writes
		{"hydraCleanup", b.hydraCleanup},         // the ApiTokens, the TokenBackend and Hydra go
	}
}

// hydraSetUp starts Hydra (in memory) behind the counting proxy and creates
// the TokenBackend "hydra" while the operator runs (which turns it Ready),
// once, for the first Hydra phase that runs.
func (b *benchRun) hydraSetUp() *hydraRun {
	if b.hy != nil {
		return b.hy
	}
	t := b.t
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	server, err := framework.StartHydra(root, "memory")
	mustDo(t, err)
	t.Cleanup(server.Stop)
	proxy := startHydraProxy(t, server.AdminURL, server.PublicURL)
	t.Cleanup(proxy.Close)
	tb := &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: hydraBackendName},
		Spec: tokensv1alpha1.TokenBackendSpec{
			Type: tokensv1alpha1.BackendHydra, URL: proxy.URL,
			Hydra: &tokensv1alpha1.HydraSettings{TokenURL: proxy.URL + "/oauth2/token"},
			// As the other phases' TokenBackend: no client-side limit in the way.
			RateLimit:      tokensv1alpha1.RateLimit{QPS: 5000, Burst: 5000},
			ResyncInterval: &metav1.Duration{Duration: *resyncFlag},
		},
	}
	mustDo(t, framework.CreateTokenBackend(b.ctx, b.admin, tb, framework.LongWait))
	framework.CreateNamespace(t, b.admin, hydraBaselineNS, nil)
	framework.CreateNamespace(t, b.admin, hydraNS, nil)
	b.hy = &hydraRun{n: *hydraNFlag, server: server, proxy: proxy, tb: tb}
	return b.hy
}

// hydraConvergence times, hydraRounds times in turn, the baseline and the
// operator converging N Hydra ApiTokens, and compares the total of each. The
// operator's calls are counted in its last round, whose ApiTokens stay for the
// phases that follow.
func (b *benchRun) hydraConvergence() {
	hy, t, n := b.hydraSetUp(), b.t, *hydraNFlag
	for round := range hydraRounds {
		if round > 0 {
			b.c.StopOperator()
			removeTokens(t, b.setup, hydraNS)
		}
		b.hydraBaseline()
		b.hydraConverge()
		t.Logf("Hydra round %d: baseline %v, convergence %v", round+1,
			hy.baselineTook[round].Round(time.Millisecond), hy.convergenceTook[round].Round(time.Millisecond))
	}
	// The rounds together: each side's total over the interleaved rounds. The
	// best of each side would compare a lucky round of one with any round of
	// the other; a 10-second round moves by 20-30 % here from one to the next.
	baseline, converged := sumOf(hy.baselineTook), sumOf(hy.convergenceTook)
	ratio := converged.Seconds() / baseline.Seconds()
	b.r.add(fmt.Sprintf("Hydra: convergence time (%d rounds)", hydraRounds), converged.Seconds(), "s", "", nil)
	b.r.add(fmt.Sprintf("Hydra: baseline time (%d rounds)", hydraRounds), baseline.Seconds(), "s", "", nil)
	b.r.add("Hydra: convergence / baseline", ratio, "ratio", "<= 1.20", le(ratio, 1.20))

	k8sCalls := auditCounts(t, b.c.AuditLogPath, hy.convStart.audit, hy.convEnd.audit)
	total, _, _, events := convergenceCalls(k8sCalls)
	t.Logf("Hydra convergence: Kubernetes requests %v", k8sCalls)
	b.r.add("Hydra: Kubernetes requests per token", float64(total)/float64(n), "requests", "", nil)
	// The ratio above compares like with like only while the baseline makes
	// the operator's calls: when the operator's change, runHydraBaseline must.
	same := float64(total) / float64(max(1, hy.baselineK8sCalls))
	b.r.add("Hydra: those requests / the baseline's", same, "ratio", "0.98-1.02", between(same, 0.98, 1.02))
	b.r.add("Hydra: events created per token (separate)", float64(events)/float64(n), "events", "", nil)
	hydraCalls := countsSince(hy.hydraAtConvStart, hy.hydraAtConvEnd)
	t.Logf("Hydra convergence: Hydra requests %v", hydraCalls)
	// A fresh ApiToken costs one create: its routine reads start one resync
	// interval after it is Ready, later than the convergence ends.
	perToken := float64(tokenCalls(hydraCalls)) / float64(n)
	b.r.add("Hydra: calls per token (creation)", perToken, "calls", "<= 1.02", le(perToken, 1.02))
}

// hydraBaseline times a plain client making, for N Hydra tokens, the calls
// the operator's first pass makes (runHydraBaseline), with the operator
// stopped, at its concurrency and client settings. It is timed as the operator
// is, by a watch that sees the last ApiToken Ready with its Secret.
func (b *benchRun) hydraBaseline() {
	hy, t := b.hy, b.t
	b.c.StopOperator()
	// The operator's own construction of a Hydra backend, over the same proxy.
	be, err := backends.New(backend.Options{Type: backends.Hydra, URL: hy.tb.Spec.URL, TokenURL: hy.tb.Spec.Hydra.TokenURL,
		QPS: float64(hy.tb.Spec.RateLimit.QPS), Burst: int(hy.tb.Spec.RateLimit.Burst)})
	mustDo(t, err)
	// The measured client learns the API's resources before it is timed, as the
	// operator does when it starts: its discovery requests are no token's.
	for _, obj := range []client.Object{&tokensv1alpha1.ApiToken{}, &corev1.Secret{}} {
		_, err := b.operator.IsObjectNamespaced(obj)
		mustDo(t, err)
	}
	waitQuiet(t)
	from, calls := b.marks(), hy.proxy.counts()
	start, cpu := time.Now(), clusterCPU(t)
	operator := client.WithFieldOwner(b.operator, controllers.FieldManager)
	readyAt := convergeWatched(t, b.admin, hydraBaselineNS, hy.n, 15*framework.LongWait, func() {
		runHydraBaseline(t, hy.n, b.admin, operator, be, hy.tb.Spec.Hydra.TokenURL)
	})
	hy.baselineTook = append(hy.baselineTook, readyAt[hy.n-1].Sub(start))
	t.Logf("Hydra baseline: CPU by process: %v", cpuSince(cpu, clusterCPU(t), hy.n))
	k8sCalls := auditCounts(t, b.c.AuditLogPath, from.audit, b.marks().audit)
	hy.baselineK8sCalls, _, _, _ = convergenceCalls(k8sCalls)
	t.Logf("Hydra baseline: Kubernetes requests %v; Hydra requests %v", k8sCalls, countsSince(calls, hy.proxy.counts()))
	removeTokens(t, b.setup, hydraBaselineNS)
}

// hydraConverge starts the operator and times it until N new Hydra ApiTokens
// are Ready, as the convergence phase does for tokenservice.
func (b *benchRun) hydraConverge() {
	hy, t, n := b.hy, b.t, b.hy.n
	b.c.StopOperator() // stopped by the baseline already
	checks := hy.proxy.counts()[backendCheck]
	mustDo(t, b.c.StartOperator(b.ctx))
	b.waitLeader()
	// The TokenBackend registered (its check that Hydra answers comes first),
	// the baseline's objects gone, the machine quiet.
	framework.Eventually(t, "the restarted operator checks Hydra", framework.LongWait, func() error {
		if hy.proxy.counts()[backendCheck] == checks {
			return fmt.Errorf("no check yet")
		}
		return nil
	})
	waitQuiet(t)
	hy.convStart, hy.hydraAtConvStart = b.marks(), hy.proxy.counts()
	start, cpu := time.Now(), clusterCPU(t)
	readyAt := convergeWatched(t, b.admin, hydraNS, n, 15*framework.LongWait, func() {
		parallel(n, 20, func(i int) {
			at := apiToken(hydraNS, fmt.Sprintf("h%d", i))
			at.Spec.BackendRef.Name = hydraBackendName
			if err := b.admin.Create(b.ctx, at); err != nil {
				t.Error(err)
			}
		})
	})
	hy.convergenceTook = append(hy.convergenceTook, time.Since(start))
	hy.convEnd, hy.hydraAtConvEnd, hy.convEndAt = b.marks(), hy.proxy.counts(), time.Now()
	t.Logf("Hydra convergence: CPU by process: %v", cpuSince(cpu, clusterCPU(t), n))
	t.Logf("Hydra convergence: first Ready after %v, half after %v, all after %v", readyAt[0].Sub(start).Round(time.Millisecond),
		readyAt[n/2].Sub(start).Round(time.Millisecond), readyAt[n-1].Sub(start).Round(time.Millisecond))
}

// hydraAtRest leaves the Hydra tokens alone from the end of their convergence
// for a resync interval and a few seconds: Hydra cannot answer a conditional
// read, so each token costs one read of its client per resync (compared with
// the last version locally), and nothing is written to Kubernetes.
func (b *benchRun) hydraAtRest() {
	hy, t := b.hydraSetUp(), b.t
	from, calls, start := hy.convEnd, hy.hydraAtConvEnd, hy.convEndAt
	if start.IsZero() { // the convergence was skipped
		from, calls, start = b.marks(), hy.proxy.counts(), time.Now()
	}
	// Each token's first routine read comes one resync after it was Ready, so
	// before the convergence's end plus one resync.
	time.Sleep(time.Until(start.Add(*resyncFlag + 5*time.Second)))
	atRest := countsSince(calls, hy.proxy.counts())
	writes := idleTokenWrites(t, b.c.AuditLogPath, from.audit, -1, "")
	for _, w := range writes {
		t.Logf("Hydra: write at rest: %s", w)
	}
	tokens := float64(countTokens(t, b.setup, hydraNS))
	resyncs := time.Since(start).Seconds() / resyncFlag.Seconds()
	perResync := float64(tokenCalls(atRest)) / (tokens * resyncs)
	t.Logf("Hydra at rest: Hydra requests %v over %.2f resyncs", atRest, resyncs)
	if tokenCalls(atRest) == 0 {
		t.Errorf("Hydra at rest: no read of any client in %v: the window measured nothing", time.Since(start).Round(time.Second))
	}
	b.r.add("Hydra: calls per token per resync (at rest)", perResync, "ratio", "<= 1.1", le(perResync, 1.1))
	b.r.add("Hydra: Kubernetes writes at rest", float64(len(writes)), "writes", "= 0", le(float64(len(writes)), 0))
	// A pending Secret holds a live secret until the delivery deletes it: one
	// left at rest is a copy of the credentials until the ApiToken's next pass.
	pending := pendingSecrets(t, b.setup, hydraNS)
	for _, name := range pending {
		t.Logf("Hydra: pending Secret left at rest: %s", name)
	}
	b.r.add("Hydra: pending Secrets left at rest", float64(len(pending)), "Secrets", "= 0", le(float64(len(pending)), 0))
}

// pendingSecrets names the pending Secrets (secrets written ahead, not yet
// delivered) in ns.
func pendingSecrets(t *testing.T, c client.Client, ns string) []string {
	list := &corev1.SecretList{}
	mustDo(t, c.List(t.Context(), list, client.InNamespace(ns)))
	var names []string
	for _, s := range list.Items {
		if s.Type == pendingSecretType {
			names = append(names, s.Name)
		}
	}
	return names
}

// hydraCleanup removes the Hydra ApiTokens and Secrets and the TokenBackend
// with the operator stopped, as the baseline's are, and stops Hydra: the later
// phases measure an operator that has never seen them. Deletion is not
// measured, and the baseline that follows stops the operator anyway.
func (b *benchRun) hydraCleanup() {
	hy, t := b.hydraSetUp(), b.t
	b.c.StopOperator()
	removeTokens(t, b.setup, hydraNS)
	mustDo(t, client.IgnoreNotFound(b.setup.Delete(b.ctx, hy.tb)))
	framework.Eventually(t, "the Hydra ApiTokens are gone", framework.LongWait, func() error {
		if left := countTokens(t, b.setup, hydraNS); left > 0 {
			return fmt.Errorf("%d left", left)
		}
		return nil
	})
	hy.proxy.Close()
	hy.server.Stop()
}

func countTokens(t *testing.T, c client.Client, ns string) int {
	list := &tokensv1alpha1.ApiTokenList{}
	mustDo(t, c.List(t.Context(), list, client.InNamespace(ns)))
	return len(list.Items)
}

// runHydraBaseline makes, per token, the calls the operator's first pass makes
// for a Hydra token, in its order (the audit log shows them, counted in
// hydraConvergence), and leaves objects of the same shape: the Secrets with
// their labels, annotations and owner reference, the status with its
// conditions and history. The operator's reads of its own Secrets come from
// its cache (the source Secret records the change whose secret it holds in the
// write that delivers it): the baseline makes none either.
func runHydraBaseline(t *testing.T, n int, admin, operator client.Client, be backend.Backend, tokenURL string) {
	ctx := t.Context()
	parallel(n, *workers, func(i int) {
		at := apiToken(hydraBaselineNS, fmt.Sprintf("b%d", i))
		var sid, key string
		var secret backend.AuthToken
		var tok *backend.Token
		var creds backend.Credentials
		var pending, source *corev1.Secret
		for _, step := range []func() error{
			func() error { return admin.Create(ctx, at) },
			func() error {
				patch := client.MergeFrom(at.DeepCopy())
				at.Finalizers = []string{tokensv1alpha1.Finalizer}
				return operator.Patch(ctx, at, patch)
			},
			func() (err error) {
				sid, key = string(at.UID), "create/"+string(at.UID)
				source = hydraBaselineSecret(at, "apitoken-source-"+shortHex(sid), sourceSecretType, 1, map[string][]byte{})
				if secret, err = hydra.NewSecret(); err != nil {
					return err
				}
				pending = hydraBaselineSecret(at, at.Name+"-pending", pendingSecretType, 0, map[string][]byte{
					tokensv1alpha1.DefaultAccountSIDKey: []byte(sid), tokensv1alpha1.DefaultAuthTokenKey: []byte(secret.Reveal()), "idempotencyKey": []byte(key)})
				return operator.Create(ctx, pending)
			},
			func() (err error) {
				tok, creds, err = be.Create(ctx, key, backend.CreateRequest{Name: at.Name, PrimaryContact: "ops@example.com",
					Scopes: []string{"reports:read"}, State: backend.StateEnabled, ExternalID: sid, SID: sid, AuthToken: secret})
				return err
			},
			func() error {
				source.Annotations["tokens.apitoken.dev/credentials-generation"] = strconv.FormatInt(creds.Generation, 10)
				source.Annotations["tokens.apitoken.dev/written-ahead-for"] = key
				source.Data = map[string][]byte{tokensv1alpha1.DefaultAccountSIDKey: []byte(sid), tokensv1alpha1.DefaultAuthTokenKey: []byte(secret.Reveal())}
				return operator.Create(ctx, source)
			},
			func() error {
				return operator.Create(ctx, hydraBaselineSecret(at, at.Name, corev1.SecretTypeOpaque, creds.Generation, map[string][]byte{
					tokensv1alpha1.DefaultClientIDKey: []byte(sid), tokensv1alpha1.DefaultClientSecretKey: []byte(secret.Reveal()),
					tokensv1alpha1.DefaultTokenURLKey: []byte(tokenURL)}))
			},
			func() error { return operator.Delete(ctx, pending, client.Preconditions{UID: &pending.UID}) },
			func() error {
				patch := client.MergeFrom(at.DeepCopy())
				setBaselineStatus(at, tok, creds.Generation)
				return operator.Status().Patch(ctx, at, patch)
			},
		} {
			if err := step(); err != nil {
				t.Error(err)
				return
			}
		}
	})
}

// hydraBaselineSecret is a Secret as the operator writes it for a Hydra token.
func hydraBaselineSecret(at *tokensv1alpha1.ApiToken, name string, secretType corev1.SecretType, generation int64, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: at.Namespace,
			Labels: map[string]string{tokensv1alpha1.ManagedByLabel: "bench-baseline", tokensv1alpha1.ApiTokenLabel: at.Name},
			Annotations: map[string]string{"tokens.apitoken.dev/credentials-generation": strconv.FormatInt(generation, 10),
				"tokens.apitoken.dev/credentials-hash": shortHex(name + "\x00" + strconv.FormatInt(generation, 10))},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "ApiToken", Name: at.Name, UID: at.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Type: secretType,
		Data: data,
	}
}

// shortHex is the operator's short hash: the first 16 bytes of the SHA-256, in hex.
func shortHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// hydraProxy is a reverse proxy in front of Hydra's admin API and its token
// endpoint (/oauth2/token) that counts each request by "METHOD path status",
// a client ID in the path written {id}: Hydra logs no requests, and the proxy
// counts what Hydra was asked, retries included, for the operator and the
// baseline alike (both pay its hop).
type hydraProxy struct {
	*httptest.Server
	mu    sync.Mutex
	byKey map[string]int
}

func startHydraProxy(t *testing.T, adminURL, publicURL string) *hydraProxy {
	admin, err := url.Parse(adminURL)
	mustDo(t, err)
	public, err := url.Parse(publicURL)
	mustDo(t, err)
	p := &hydraProxy{byKey: map[string]int{}}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64 // as the operator's: no new connection per request
	p.Server = httptest.NewServer(&httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			if pr.In.URL.Path == "/oauth2/token" {
				pr.SetURL(public)
			} else {
				pr.SetURL(admin)
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			p.count(resp.Request, resp.StatusCode)
			if resp.StatusCode >= 400 && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusConflict {
				// Hydra's error (its answers to a create or a patch may echo the
				// secret: only its error code and description are logged).
				body, _ := io.ReadAll(resp.Body)
				resp.Body = io.NopCloser(bytes.NewReader(body))
				var e struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				_ = json.Unmarshal(body, &e)
				t.Logf("Hydra proxy: %s %s: %d %s: %.300s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, e.Error, e.Description)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			p.count(req, http.StatusBadGateway)
			t.Logf("Hydra proxy: %s %s: %v", req.Method, req.URL.Path, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	})
	return p
}

func (p *hydraProxy) count(req *http.Request, status int) {
	path := req.URL.Path
	if rest, ok := strings.CutPrefix(path, "/admin/clients/"); ok {
		_, sub, _ := strings.Cut(rest, "/")
		path = strings.TrimSuffix("/admin/clients/{id}/"+sub, "/")
	}
	if path == "/admin/clients" && req.URL.Query().Get("owner") != "" {
		path += "?owner={uid}"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byKey[fmt.Sprintf("%s %s %d", req.Method, path, status)]++
}

// counts are the requests so far.
func (p *hydraProxy) counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.byKey)
}

// countsSince is the requests between two counts.
func countsSince(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for key, count := range after {
		if d := count - before[key]; d > 0 {
			out[key] = d
		}
	}
	return out
}

// backendCheck is the TokenBackend's own check that Hydra answers (a list of
// one client, without an owner), once a resync interval and at the operator's
// start: no ApiToken causes it.
const backendCheck = "GET /admin/clients 200"

// tokenCalls sums the requests for tokens: all but the backend's checks.
func tokenCalls(counts map[string]int) int {
	n := 0
	for key, count := range counts {
		if !strings.HasPrefix(key, "GET /admin/clients ") {
			n += count
		}
	}
	return n
}

func sumOf(ds []time.Duration) time.Duration {
	var total time.Duration
	for _, d := range ds {
		total += d
	}
	return total
}
