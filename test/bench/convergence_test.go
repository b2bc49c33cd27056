package bench

// This file: the convergence pairs (the baseline and the operator, timed in
// turn), and the operator's Kubernetes and backend calls (amplification).

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// convergenceTarget is the most the median convergence / baseline ratio may be.
const convergenceTarget = 1.10

// timedRun is one timed convergence run: how long it took and the CPU per
// converged token in ms, by process (command name, as clusterCPU reads it):
// "plain-client" is the baseline's writer, "manager" the operator, "bench"
// this test process, the creator and watcher of the ApiTokens in both runs.
type timedRun struct {
	Seconds float64            `json:"seconds"`
	CPU     map[string]float64 `json:"cpuMsPerToken"`
}

// convergencePair is an operator run and the baseline runs before and after
// it, of the same number of ApiTokens, each started from the same state:
// nothing left of the runs before, a quiet machine. A pair's baseline after
// is the next pair's baseline before.
type convergencePair struct {
	BaselineBefore timedRun `json:"baselineBefore"`
	Operator       timedRun `json:"operator"`
	BaselineAfter  timedRun `json:"baselineAfter"`
	Ratio          float64  `json:"ratio"`
}

// bracketed is an operator run's figure over the geometric mean of the same
// figure in the baseline runs before and after it. The machine drifts over a
// benchmark (the control plane's runs slow down by several per cent from one
// pair to the next), and an operator run compared only with the baseline
// before it would pay for that drift; between two baselines, a steady drift
// cancels out.
func bracketed(operator, before, after float64) float64 {
	return operator / math.Sqrt(before*after)
}

// ratio is the pair's convergence time over its baselines'.
func (p convergencePair) ratio() float64 {
	return bracketed(p.Operator.Seconds, p.BaselineBefore.Seconds, p.BaselineAfter.Seconds)
}

// cpuRatio is the operator's CPU per token over the plain client's in the
// baseline runs around it.
func (p convergencePair) cpuRatio() float64 {
	return bracketed(p.Operator.CPU["manager"], p.BaselineBefore.CPU[plainClientCommand], p.BaselineAfter.CPU[plainClientCommand])
}

// convergence times -pairs operator runs, each between two baseline runs, on
// the same control plane: baseline, operator, baseline, operator, ...,
// baseline. One sample of each side lets the machine's noise (20-30 % from one
// run to the next on a shared two-core machine) pass or fail the target; the
// median of the pairs' ratios is the figure, their lowest and highest its
// spread. Each operator run but the last is removed before the baseline after
// it; the last one's ApiTokens stay, and the operator, stopped for the last
// baseline, is started again and tops them up to N when a pair has fewer, for
// the later phases.
func (b *benchRun) convergence() {
	t, pairN := b.t, b.pairN()
	if *pairsFlag < 1 {
		t.Fatalf("-pairs %d: at least one pair is needed", *pairsFlag)
	}
	t.Logf("convergence: %d operator runs of %d ApiTokens each, each between two baseline runs; the median ratio must be <= %.2f", *pairsFlag, pairN, convergenceTarget)
	framework.CreateNamespace(t, b.admin, "baseline", nil)
	framework.CreateNamespace(t, b.admin, "bench", nil)
	framework.CreateNamespace(t, b.admin, "warm-up", nil)
	// The plain client runs from the first baseline to the last, warmed up
	// before each of its runs as the operator is.
	b.plain = b.startPlainClient()
	defer b.plain.stop()
	started := time.Now()
	before := b.timeBaseline(pairN, *profileFlag && *pairsFlag == 1)
	for i := range *pairsFlag {
		// With -profile, the last operator run and the baseline before it are
		// profiled: a profiler costs its process CPU, and the other runs then
		// measure without it.
		last := i == *pairsFlag-1
		operator := b.timeOperator(pairN, *profileFlag && last)
		b.c.StopOperator() // the baseline's ApiTokens would be its own
		if last {
			b.lastRunEnd = b.marks()
		} else {
			removeTokens(t, b.setup, "bench")
		}
		after := b.timeBaseline(pairN, *profileFlag && i == *pairsFlag-2)
		pair := convergencePair{BaselineBefore: before, Operator: operator, BaselineAfter: after}
		pair.Ratio = pair.ratio()
		b.pairs = append(b.pairs, pair)
		// The time in all shows what the cleanups and the waits for a quiet
		// machine cost, which decides how many tokens a pair can afford.
		t.Logf("pair %d of %d: baseline %.2f s, operator %.2f s, baseline %.2f s, ratio %.3f; CPU/token: operator %.2f ms, plain client %.2f and %.2f ms, ratio %.3f (%v since the first baseline)",
			i+1, *pairsFlag, before.Seconds, operator.Seconds, after.Seconds, pair.Ratio,
			operator.CPU["manager"], before.CPU[plainClientCommand], after.CPU[plainClientCommand], pair.cpuRatio(),
			time.Since(started).Round(100*time.Millisecond))
		before = after
	}
	// The later phases need N ApiTokens converged by the operator: started
	// again with the last run's, it converges the rest. Its start-up is left
	// out of the amplification (the restart phase measures one), its calls for
	// the rest counted in. The memory per token is still counted from the RSS
	// of the last timed run's operator as it started: this one's, taken after
	// its start, would already hold that run's ApiTokens.
	b.startOperator()
	waitQuiet(t)
	b.topUpStart = b.marks()
	if pairN < b.n {
		start := time.Now()
		readyAt := convergeWatched(t, b.admin, "bench", b.n, 15*framework.LongWait, func() { createTokens(t, b.admin, "bench", "t", pairN, b.n, nil) })
		t.Logf("convergence: the operator converged the other %d ApiTokens in %v (not a figure: no baseline for them)",
			b.n-pairN, readyAt[b.n-1].Sub(start).Round(time.Millisecond))
	}
	b.convEnd = b.marks()
	b.reportPairs(pairN)
}

// startOperator starts the operator, stopped for a baseline run, and waits
// until it leads and has fetched its TokenBackend's catalog.
func (b *benchRun) startOperator() {
	t := b.t
	mustDo(t, b.c.StartOperator(b.ctx))
	b.waitLeader()
	// Let the TokenBackend register (its catalog is fetched first), and the
	// garbage collector and the API server finish with the baseline's objects
	// (deleted just before): measure from a quiet machine, as the baseline was.
	// Waiting for the fetch rather than a fixed time saves each pair seconds.
	framework.Eventually(t, "the restarted operator fetches its TokenBackend's catalog", framework.LongWait, func() error {
		if backendCallsSoFar(b.c.OperatorMetricsURL, "catalog") == 0 {
			return fmt.Errorf("no catalog fetched yet")
		}
		return nil
	})
}

// pairN is the number of ApiTokens of each run of a pair: -pair-n, or N.
func (b *benchRun) pairN() int {
	if *pairNFlag <= 0 || *pairNFlag > b.n {
		return b.n
	}
	return *pairNFlag
}

// profileSeconds is how long to profile a run for: as long as the earlier
// baselines took, or, before any, a guess of 10 s per 1000 tokens.
func (b *benchRun) profileSeconds(n int) int {
	if len(b.pairs) == 0 {
		return max(5, n/100)
	}
	var took []float64
	for _, pair := range b.pairs {
		took = append(took, pair.BaselineBefore.Seconds)
	}
	return max(1, int(median(took)+0.5))
}

// timeBaseline times the minimal work for n tokens by the plain client, with
// the operator stopped: backend create, finalizer patch, Secret create, status
// patch, at the operator's concurrency and client settings, for ApiTokens that
// this process creates as it does in the operator's run. It is timed as the
// operator is: by a watch that sees the last ApiToken Ready with its Secret, so
// the observer costs both runs the same. It returns the time and the CPU per
// token by process, and removes its objects.
func (b *benchRun) timeBaseline(n int, profiled bool) timedRun {
	t := b.t
	// Stopped, or it would take the warm-up's and the run's ApiTokens for its own.
	b.c.StopOperator()
	b.warmUp("the plain client", b.plain.write)
	waitQuiet(t)
	var apiServerProfile *pendingProfile
	if profiled {
		apiServerProfile = b.apiServerProfile(fmt.Sprintf("profile?seconds=%d", b.profileSeconds(n)), "apiserver-baseline.cpu.pprof")
	}
	start, cpu := time.Now(), clusterCPU(t)
	// This process creates the ApiTokens, as in the operator's run, and hands
	// each to the plain client, which makes the rest of the writes.
	readyAt := convergeWatched(t, b.admin, "baseline", n, 15*framework.LongWait, func() { createTokens(t, b.admin, "baseline", "b", 0, n, b.plain.write) })
	took, used := readyAt[n-1].Sub(start), cpuPerToken(cpu, clusterCPU(t), n)
	t.Logf("baseline: CPU by process: %v", formatCPU(used))
	apiServerProfile.wait()
	// Its Secrets and ApiTokens go now, so that the operator's run and the next
	// pair start without them (the operator's run waits for a quiet machine).
	removeTokens(t, b.setup, "baseline")
	return timedRun{Seconds: took.Seconds(), CPU: used}
}

// timeOperator starts the operator and times it until n new ApiTokens are
// Ready with their Secrets; it returns the time and the CPU per token by
// process. The operator keeps running with them.
func (b *benchRun) timeOperator(n int, profiled bool) timedRun {
	t := b.t
	b.startOperator()
	// The memory per token is counted from the operator as it started, before
	// the warm-up grew its heap: the warm-up's ApiTokens are gone, but the heap
	// they grew stays, and counting from after it would hide that growth.
	b.rssBefore = rss(t, b.c.OperatorPID())
	b.warmUp("the operator", nil)
	waitQuiet(t)
	b.convStart = b.marks()
	var profiles []*pendingProfile
	if profiled {
		profiles = append(profiles,
			b.profile(fmt.Sprintf("profile?seconds=%d", b.profileSeconds(n)), "convergence.cpu.pprof"),
			b.apiServerProfile(fmt.Sprintf("profile?seconds=%d", b.profileSeconds(n)), "apiserver-convergence.cpu.pprof"))
	}
	start, cpu := time.Now(), clusterCPU(t)
	readyAt := convergeWatched(t, b.admin, "bench", n, 15*framework.LongWait, func() { createTokens(t, b.admin, "bench", "t", 0, n, nil) })
	took, used := readyAt[n-1].Sub(start), cpuPerToken(cpu, clusterCPU(t), n)
	t.Logf("convergence: CPU by process: %v", formatCPU(used))
	t.Logf("convergence: first Ready after %v, half after %v, all after %v", readyAt[0].Sub(start).Round(time.Millisecond),
		readyAt[n/2].Sub(start).Round(time.Millisecond), took.Round(time.Millisecond))
	for _, p := range profiles {
		p.wait()
	}
	if profiled {
		// The operator started just before this run: its allocations so far are
		// the convergence's (and its start's and warm-up's), which the CPU
		// profile's garbage collection comes from.
		b.profile("allocs", "convergence.allocs.pprof").wait()
	}
	return timedRun{Seconds: took.Seconds(), CPU: used}
}

// warmUp has the just-started operator, or the plain client, converge
// -warm-up ApiTokens of their own namespace, then removes them (handTo hands
// each created ApiToken to the plain client; nil for the operator, which
// watches). A process timed seconds after its start, or after a minute idle,
// would pay on every token of the run what a running one does not: a heap
// that has not yet grown to its size (or that the collector and the scavenger
// gave back), goroutine stacks growing, handshakes for its connections. The
// operator deletes its warm-up's ApiTokens as it deletes any (its finalizer,
// the backend token); the plain client's are removed with their finalizer cut,
// as the baseline's are.
func (b *benchRun) warmUp(who string, handTo func(*tokensv1alpha1.ApiToken)) {
	t, n := b.t, *warmUpFlag
	if n <= 0 {
		return
	}
	start := time.Now()
	convergeWatched(t, b.admin, "warm-up", n, 15*framework.LongWait, func() { createTokens(t, b.admin, "warm-up", "w", 0, n, handTo) })
	if handTo != nil {
		removeTokens(t, b.setup, "warm-up")
	} else {
		mustDo(t, b.setup.DeleteAllOf(b.ctx, &tokensv1alpha1.ApiToken{}, client.InNamespace("warm-up")))
	}
	framework.Eventually(t, "the warm-up's ApiTokens and Secrets are gone", framework.LongWait, func() error {
		secrets := &corev1.SecretList{}
		mustDo(t, b.setup.List(b.ctx, secrets, client.InNamespace("warm-up")))
		if left := countTokens(t, b.setup, "warm-up"); left > 0 || len(secrets.Items) > 0 {
			return fmt.Errorf("%d ApiTokens and %d Secrets left", left, len(secrets.Items))
		}
		return nil
	})
	t.Logf("warm-up: %s converged %d ApiTokens, which were then removed, in %v", who, n, time.Since(start).Round(100*time.Millisecond))
}

// cpuProcesses are the processes whose CPU per token is reported, in the
// order printed, by their command names as clusterCPU reads them (the
// kernel cuts kube-controller-manager's to 15 characters), with the name
// printed. "bench" is this test process, the creator and watcher of the
// ApiTokens in both runs.
var cpuProcesses = []struct{ command, printed string }{
	{"manager", "manager"}, {plainClientCommand, "plain client"}, {"kube-apiserver", "kube-apiserver"}, {"etcd", "etcd"},
	{"tokenservice", "tokenservice"}, {"kube-controller", "controller-manager"}, {"bench", "test client"},
}

// reportPairs adds the pairs' figures: each run's time and each pair's ratio,
// the median ratio (the one with a target) with its lowest and highest, and
// the median CPU per token of each process in the baseline runs and the
// operator's.
func (b *benchRun) reportPairs(pairN int) {
	pairs := len(b.pairs)
	var ratios, baselines, operators []float64
	baselineRuns := []timedRun{b.pairs[0].BaselineBefore}
	for i, pair := range b.pairs {
		ratios, operators = append(ratios, pair.Ratio), append(operators, pair.Operator.Seconds)
		baselineRuns = append(baselineRuns, pair.BaselineAfter)
		b.r.add(fmt.Sprintf("pair %d: baseline time before", i+1), pair.BaselineBefore.Seconds, "s", "", nil)
		b.r.add(fmt.Sprintf("pair %d: convergence time", i+1), pair.Operator.Seconds, "s", "", nil)
		b.r.add(fmt.Sprintf("pair %d: baseline time after", i+1), pair.BaselineAfter.Seconds, "s", "", nil)
		b.r.add(fmt.Sprintf("pair %d: convergence / baselines (geometric mean)", i+1), pair.Ratio, "ratio", "", nil)
	}
	for _, run := range baselineRuns {
		baselines = append(baselines, run.Seconds)
	}
	// Fewer than N when -pair-n says so, to keep the run's time: said here.
	b.r.add(fmt.Sprintf("ApiTokens per run of a pair (N = %d)", b.n), float64(pairN), "ApiTokens", "", nil)
	b.r.add(fmt.Sprintf("baseline time (median of %d runs)", len(baselines)), median(baselines), "s", "", nil)
	b.r.add(fmt.Sprintf("convergence time (median of %d runs)", pairs), median(operators), "s", "", nil)
	ratio := median(ratios)
	b.r.add(fmt.Sprintf("convergence / baseline (median of %d pairs)", pairs), ratio, "ratio",
		fmt.Sprintf("<= %.2f", convergenceTarget), le(ratio, convergenceTarget))
	b.r.add("convergence / baseline, lowest pair", slices.Min(ratios), "ratio", "", nil)
	b.r.add("convergence / baseline, highest pair", slices.Max(ratios), "ratio", "", nil)
	operatorRuns := make([]timedRun, 0, pairs)
	for _, pair := range b.pairs {
		operatorRuns = append(operatorRuns, pair.Operator)
	}
	for _, side := range []struct {
		name string
		runs []timedRun
	}{{"baseline runs", baselineRuns}, {"operator runs", operatorRuns}} {
		var totals []float64
		for _, run := range side.runs {
			total := 0.0
			for _, v := range run.CPU {
				total += v
			}
			totals = append(totals, total)
		}
		for _, process := range cpuProcesses {
			var perToken []float64
			for _, run := range side.runs {
				perToken = append(perToken, run.CPU[process.command])
			}
			b.r.add(fmt.Sprintf("median CPU/token, %s: %s", side.name, process.printed), median(perToken), "ms", "", nil)
		}
		b.r.add(fmt.Sprintf("median CPU/token, %s: all processes", side.name), median(totals), "ms", "", nil)
	}
	b.reportClientCPU()
}

// reportClientCPU compares the operator's CPU per converged token with what
// the plain client, a process of its own, spends on the same writes in the
// baseline runs around it (bracketed). The operator does more than the client (it
// watches and caches what it writes, decides, and schedules reads), so this
// is the most that work may cost: at most what the plain client spends. Like
// the convergence ratio, the target is on the median of the pairs' ratios:
// the runs of a pair are a minute apart, on a machine whose speed drifts more
// than that over a whole benchmark.
func (b *benchRun) reportClientCPU() {
	var ratios []float64
	for _, pair := range b.pairs {
		ratios = append(ratios, pair.cpuRatio())
	}
	ratio := median(ratios)
	b.r.add(fmt.Sprintf("CPU/token, operator / plain client (median of %d pairs)", len(ratios)), ratio, "ratio", "<= 1.00", le(ratio, 1.00))
	b.r.add("CPU/token, operator / plain client, lowest pair", slices.Min(ratios), "ratio", "", nil)
	b.r.add("CPU/token, operator / plain client, highest pair", slices.Max(ratios), "ratio", "", nil)
}

// median is the middle value, or the mean of the two middle values.
func median(values []float64) float64 {
	sorted := slices.Sorted(slices.Values(values))
	if len(sorted) == 0 {
		return 0
	}
	middle := len(sorted) / 2
	if len(sorted)%2 == 0 {
		return (sorted[middle-1] + sorted[middle]) / 2
	}
	return sorted[middle]
}

// waitQuiet waits until the processes of the cluster, the operator included,
// use less than a tenth of one core for two seconds in a row, so that neither
// timed run pays for work left over from before it; at most three minutes,
// after which it measures anyway and names the processes that were busy.
func waitQuiet(t *testing.T) {
	const quiet = 0.1 // cores
	deadline := time.Now().Add(3 * time.Minute)
	before, calm := clusterCPU(t), 0
	lastSecond := map[string]string{}
	for calm < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		now := clusterCPU(t)
		busy := 0.0
		for name, v := range now {
			if name != "bench" {
				busy += v - before[name]
				lastSecond[name] = fmt.Sprintf("%.2f", v-before[name])
			}
		}
		if before = now; busy < quiet {
			calm++
		} else {
			calm = 0
		}
	}
	if calm < 2 {
		t.Logf("the machine did not become quiet within three minutes (cores used in the last second: %v); measuring anyway", lastSecond)
	}
}

// amplification compares the operator's calls during convergence with the
// minimal ones: 3 Kubernetes writes and 1 backend call per token.
func (b *benchRun) amplification() {
	t, n := b.t, b.n
	// Two windows: the last timed operator run, and the rest of N after the
	// operator's start again (the last baseline run lies between them), when
	// a run had fewer than N: a range of a log that is empty fails the count.
	k8sCalls := auditCounts(t, b.c.AuditLogPath, b.convStart.audit, b.lastRunEnd.audit)
	backendCalls := tokenServiceCounts(t, b.c.TokenServiceLogPath(), b.convStart.ts, b.lastRunEnd.ts)
	if b.pairN() < n {
		k8sCalls = addCounts(k8sCalls, auditCounts(t, b.c.AuditLogPath, b.topUpStart.audit, b.convEnd.audit))
		backendCalls = addCounts(backendCalls, tokenServiceCounts(t, b.c.TokenServiceLogPath(), b.topUpStart.ts, b.convEnd.ts))
	}
	total, writes, conflicts, events := convergenceCalls(k8sCalls)
	t.Logf("Kubernetes requests during convergence: %v", k8sCalls)
	minimal := float64(3 * n)
	conflictPct := 100 * float64(conflicts) / float64(max(1, writes))
	b.r.add("API amplification", float64(total)/minimal, "ratio", "<= 1.10", le(float64(total)/minimal, 1.10))
	b.r.add("events created per token (separate)", float64(events)/float64(n), "events", "", nil)
	b.r.add("API 409 conflicts / writes", conflictPct, "%", "< 0.5", le(conflictPct, 0.5))
	t.Logf("backend calls during convergence: %v", backendCalls)
	// A convergence longer than the resync interval (10,000 tokens with a 1-minute
	// resync) also holds the scheduled drift checks of the tokens Ready by then:
	// conditional reads answered 304, counted on their own.
	backendCalls, resyncReads := withoutRoutineReads(backendCalls)
	perToken := float64(sumCounts(backendCalls)) / float64(n)
	b.r.add("backend calls per token (convergence)", perToken, "calls", "<= 1.02", le(perToken, 1.02))
	b.r.add("resync reads (304) during convergence (separate)", float64(resyncReads), "reads", "", nil)
}

// addCounts is the sum of two sets of counts by key.
func addCounts(a, b map[string]int) map[string]int {
	sum := maps.Clone(a)
	for key, count := range b {
		sum[key] += count
	}
	return sum
}

// withoutRoutineReads splits backend call counts (tokenServiceCounts) into the
// calls other than the routine conditional reads answered 304, and the number
// of those.
func withoutRoutineReads(calls map[string]int) (map[string]int, int) {
	const routine = "GET /v1/tokens/{sid} 304"
	rest := maps.Clone(calls)
	delete(rest, routine)
	return rest, calls[routine]
}

// convergenceCalls sums auditCounts: all requests but leases and events, the
// writes among them, the 409s, and the events (a feature, reported on their own).
func convergenceCalls(k8sCalls map[string]int) (total, writes, conflicts, events int) {
	for key, count := range k8sCalls {
		if strings.Contains(key, "leases") {
			continue
		}
		if strings.Contains(key, " events ") {
			events += count
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
	return total, writes, conflicts, events
}

// baselineSecret is the Secret as the operator writes it.
func baselineSecret(at *tokensv1alpha1.ApiToken, sid string, creds backend.Credentials) *corev1.Secret {
	// The operator's credentials hash: over the SID, the token's SHA-256 and the generation.
	tokenSum := sha256.Sum256([]byte(creds.AuthToken.Reveal()))
	sum := sha256.Sum256([]byte(sid + "\x00" + hex.EncodeToString(tokenSum[:]) + "\x00" + strconv.FormatInt(creds.Generation, 10)))
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: at.Name, Namespace: at.Namespace,
			Labels: map[string]string{tokensv1alpha1.ManagedByLabel: "bench-baseline", tokensv1alpha1.ApiTokenLabel: at.Name},
			Annotations: map[string]string{"tokens.apitoken.dev/credentials-generation": strconv.FormatInt(creds.Generation, 10),
				"tokens.apitoken.dev/credentials-hash": hex.EncodeToString(sum[:16])},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "ApiToken", Name: at.Name, UID: at.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"accountSid": []byte(sid), "authToken": []byte(creds.AuthToken.Reveal())},
	}
}

// setBaselineStatus fills the status as the operator's first pass does.
func setBaselineStatus(at *tokensv1alpha1.ApiToken, tok *backend.Token, generation int64) {
	now := metav1.Now()
	at.Status.ObservedGeneration = at.Generation
	at.Status.AccountSID, at.Status.SecretName, at.Status.BackendETag = tok.SID, at.Name, tok.ETag
	at.Status.APIVersion, at.Status.State = int32(tok.APIVersion), tokensv1alpha1.TokenState(tok.State)
	at.Status.CredentialsIssuedAt = &now
	at.Status.History = []tokensv1alpha1.CredentialChange{{Type: tokensv1alpha1.CredentialsCreated, Time: now, AccountSID: tok.SID, Generation: generation}}
	message := fmt.Sprintf("Token %s is %s; credentials are in Secret %s", tok.SID, tok.State, at.Name)
	for _, c := range []metav1.Condition{
		{Type: tokensv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: tokensv1alpha1.ReasonReady, Message: message},
		{Type: tokensv1alpha1.ConditionReconciling, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonReady, Message: "Up to date"},
		{Type: tokensv1alpha1.ConditionStalled, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonReady, Message: "Up to date"},
	} {
		c.ObservedGeneration = at.Generation
		meta.SetStatusCondition(&at.Status.Conditions, c)
	}
}

// removeTokens deletes the Secrets in ns, then its ApiTokens, their finalizer
// removed: no operator releases them. Any backend tokens stay: nothing reads
// them again.
func removeTokens(t *testing.T, setup client.Client, ns string) {
	ctx := t.Context()
	// The Secrets first: deleted after their owners, they would be left to the
	// garbage collector to look up and delete again, work that would then run
	// during the next timed run. One request deletes them all, which leaves the
	// API server less to do before the machine is quiet again.
	mustDo(t, setup.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns)))
	list := &tokensv1alpha1.ApiTokenList{}
	mustDo(t, setup.List(ctx, list, client.InNamespace(ns)))
	parallel(len(list.Items), 20, func(i int) {
		at := &list.Items[i]
		patch := client.MergeFrom(at.DeepCopy())
		at.Finalizers = nil
		_ = setup.Patch(ctx, at, patch)
		_ = setup.Delete(ctx, at)
	})
}

// createTokens creates the ApiTokens prefix<from> to prefix<to-1> in ns, and
// hands each to handTo when it is not nil.
func createTokens(t *testing.T, admin client.Client, ns, prefix string, from, to int, handTo func(*tokensv1alpha1.ApiToken)) {
	parallel(to-from, 20, func(i int) {
		at := apiToken(ns, fmt.Sprintf("%s%d", prefix, from+i))
		if err := admin.Create(t.Context(), at); err != nil {
			t.Error(err)
			return
		}
		if handTo != nil {
			handTo(at)
		}
	})
}

// convergeWatched runs create and waits until n ApiTokens in ns are Ready with
// their Secrets, seen through a watch opened before it; it returns when each
// became Ready. A watch that the API server ends (a busy consumer on a busy
// machine) is resumed after a list, which times what it finds at the list.
func convergeWatched(t *testing.T, c client.WithWatch, ns string, n int, timeout time.Duration, create func()) []time.Time {
	readyAt := map[string]time.Time{}
	observe := func(at *tokensv1alpha1.ApiToken) {
		if _, seen := readyAt[at.Name]; !seen && framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionReady) && at.Status.SecretName != "" {
			readyAt[at.Name] = time.Now()
		}
	}
	watchFrom := func(resourceVersion string) watch.Interface {
		w, err := c.Watch(t.Context(), &tokensv1alpha1.ApiTokenList{}, &client.ListOptions{Namespace: ns, Raw: &metav1.ListOptions{ResourceVersion: resourceVersion}})
		mustDo(t, err)
		return w
	}
	w := watchFrom("")
	defer func() { w.Stop() }()
	created := make(chan struct{})
	go func() {
		defer close(created)
		create() // while the watch is read: an unread watch is ended by the API server
	}()
	defer func() { <-created }()
	deadline := time.After(timeout)
	for len(readyAt) < n {
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				list := &tokensv1alpha1.ApiTokenList{}
				mustDo(t, c.List(t.Context(), list, client.InNamespace(ns)))
				for i := range list.Items {
					observe(&list.Items[i])
				}
				w = watchFrom(list.ResourceVersion)
				continue
			}
			if at, isToken := e.Object.(*tokensv1alpha1.ApiToken); isToken && e.Type != watch.Deleted {
				observe(at)
			}
		case <-deadline:
			t.Fatalf("timed out: %d of %d ApiTokens Ready", len(readyAt), n)
		}
	}
	times := slices.Collect(maps.Values(readyAt))
	slices.SortFunc(times, time.Time.Compare)
	return times
}
