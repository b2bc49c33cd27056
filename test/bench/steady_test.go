package bench

// This file: the steady state. An idle window with several resyncs, in which
// the unrelated Secrets appear, then a restart (SIGTERM, as in a rolling
// update): its re-check of every token, the writes and backend reads of the
// window and the restart, and the memory figures.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// idleWindow leaves the operator idle for the window while the unrelated
// Secrets appear, and takes its RSS before and its peak RSS after.
func (b *benchRun) idleWindow() {
	b.rssTokens = rss(b.t, b.c.OperatorPID())
	b.window = b.marks()
	b.windowStart = time.Now()
	createUnrelatedSecrets(b.t, b.setup, *secretsFlag)
	time.Sleep(max(0, *idleFlag-time.Since(b.windowStart)))
	b.rssPeak = peakRSS(b.t, b.c.OperatorPID())
	b.profile("heap", "steady.heap.pprof").wait()
}

// restart stops the operator (SIGTERM), starts it again and times it to its
// first re-check (its caches are synced and its backend registered by then).
func (b *benchRun) restart() {
	b.c.StopOperator()
	b.atRestart = b.marks()
	b.restarted = time.Now()
	mustDo(b.t, b.c.StartOperator(b.ctx))
	b.waitLeader()
	b.leading = time.Now()
	// The new leader's start-up passes, which the first latency probes meet.
	b.restartProfile = b.profile("profile?seconds=10", "restart.cpu.pprof")
	framework.Eventually(b.t, "the restarted operator starts re-checking", framework.LongWait, func() error {
		if backendCallsSoFar(b.c.OperatorMetricsURL, "get") == 0 {
			return fmt.Errorf("no backend get yet")
		}
		return nil
	})
	b.r.add("restart: process start to first re-check", time.Since(b.restarted).Seconds(), "s", "", nil)
}

// recheck times the restart to the last first read of a token, and reports the
// latency probes that overlapped the re-check.
func (b *benchRun) recheck() {
	// The latency probes' tokens (load-*) are made or reset after the restart, and
	// a reset's reply counts as a read: they are users' changes, not re-checks.
	rechecked := sidsOf(b.t, b.admin, "bench", "load-")
	var lastRecheck time.Time
	framework.Eventually(b.t, "the restarted operator re-checks every token", *resyncFlag+framework.LongWait, func() error {
		var count int
		count, lastRecheck = firstReads(b.t, b.c.TokenServiceLogPath(), b.atRestart.ts, rechecked)
		if count != len(rechecked) {
			return fmt.Errorf("%d of %d tokens re-checked", count, len(rechecked))
		}
		return nil
	})
	b.restartProfile.wait()
	b.r.add("restart: process start to every token re-checked", lastRecheck.Sub(b.restarted).Seconds(), "s", "", nil)
	sinceLeading := lastRecheck.Sub(b.leading).Seconds()
	b.r.add("restart: leading to every token re-checked", sinceLeading, "s", fmt.Sprintf("<= %g", resyncFlag.Seconds()),
		le(sinceLeading, resyncFlag.Seconds()))
	b.restartBurst(rechecked)
	var during []time.Duration
	for _, p := range append(slices.Clone(b.loadCreate), b.loadReset...) {
		if p.start.Before(lastRecheck) {
			during = append(during, p.took)
		}
	}
	b.r.add("probes started before the re-check ended", float64(len(during)), "probes", "", nil)
	b.r.add("their slowest (create or reset)", p(during, 100), "s", "", nil)
}

// restartBurst finds the busiest 10 seconds of backend reads of the re-checked
// tokens since the restart:
// spread over the resync interval, they stay within the steady-state rate
// (tokens / resync interval) + 10%, where reading every token at once would put
// all of them in one window.
func (b *benchRun) restartBurst(sids map[string]bool) {
	var reads []time.Time
	eachRecord(b.t, b.c.TokenServiceLogPath(), b.atRestart.ts, -1, isRequest, func(e *tokenServiceRequest) {
		if p, sid := tokenServicePath(e.Path); e.Method == http.MethodGet && p == "/v1/tokens/{sid}" && sids[sid] {
			reads = append(reads, e.Time)
		}
	})
	tokens := len(sids)
	if len(reads) < tokens {
		b.t.Fatalf("restart: %d backend reads in tokenservice's log, fewer than the %d tokens re-checked", len(reads), tokens)
	}
	const window = 10 * time.Second
	busiest := busiestWindow(reads, window)
	// The shape, for a busiest window near its limit: a burst at the start is
	// the start-up's passes, one later a reader catching up on reads it made late.
	b.t.Logf("restart: backend reads of the re-checked tokens per second after leading: %v", perSecond(reads, b.leading))
	steady := float64(tokens) * window.Seconds() / resyncFlag.Seconds()
	b.r.add("restart: busiest 10 s of backend reads", float64(busiest), "reads", fmt.Sprintf("<= %.0f", 1.1*steady), le(float64(busiest), 1.1*steady))
	b.r.add("restart: steady-state reads per 10 s (separate)", steady, "reads", "", nil)
}

// perSecond counts the times in each second from start (times before it in
// the first).
func perSecond(times []time.Time, start time.Time) []int {
	var counts []int
	for _, at := range times {
		second := max(0, int(at.Sub(start)/time.Second))
		for len(counts) <= second {
			counts = append(counts, 0)
		}
		counts[second]++
	}
	return counts
}

// busiestWindow is the most times that fall within one window.
func busiestWindow(times []time.Time, window time.Duration) int {
	sorted := slices.Clone(times)
	slices.SortFunc(sorted, time.Time.Compare)
	most, lo := 0, 0
	for hi := range sorted {
		for sorted[hi].Sub(sorted[lo]) >= window {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

// steadyStateWrites lists the operator's Kubernetes writes in the window and the
// restart: there must be none but its leader-election lease.
func (b *benchRun) steadyStateWrites() {
	t, audit := b.t, b.c.AuditLogPath
	time.Sleep(2 * time.Second) // anything the re-check would write
	idleK8s := auditCounts(t, audit, b.window.audit, -1)
	leaseWrites := 0
	for key, count := range idleK8s {
		verb := strings.Fields(key)[0]
		if strings.Contains(key, "leases") && verb != "get" && verb != "list" && verb != "watch" {
			leaseWrites += count
		}
	}
	// After the restart, the latency probes write their own objects (named load-*).
	tokenWrites := append(idleTokenWrites(t, audit, b.window.audit, b.atRestart.audit, ""),
		idleTokenWrites(t, audit, b.atRestart.audit, -1, "load-")...)
	t.Logf("requests in the idle window and restart: %v", idleK8s)
	for _, w := range tokenWrites {
		t.Logf("steady-state write: %s", w)
	}
	b.r.add("steady-state Kubernetes writes", float64(len(tokenWrites)), "writes", "= 0", le(float64(len(tokenWrites)), 0))
	b.r.add("leader-election lease writes (separate)", float64(leaseWrites), "writes", "", nil)
}

// resyncReads compares the backend reads of the window and the restart with one
// conditional read per token per resync interval, plus the one check of each
// token by the restarted process.
func (b *benchRun) resyncReads() {
	gets, notModified := tokenReads(tokenServiceCounts(b.t, b.c.TokenServiceLogPath(), b.window.ts, -1))
	tokens := float64(b.n + 2*probes) // the bench tokens and the latency probes of the idle phase
	resyncs := time.Since(b.windowStart).Seconds()/resyncFlag.Seconds() + 1
	perResync := float64(gets) / (tokens * resyncs)
	notModifiedPct := 100 * float64(notModified) / float64(max(1, gets))
	b.r.add("steady-state backend reads / (tokens x resyncs)", perResync, "ratio", "<= 1.1", le(perResync, 1.1))
	b.r.add("steady-state reads answered 304", notModifiedPct, "%", ">= 99", ge(notModifiedPct, 99))
}

// memory reports the RSS figures: with N tokens, per token, the peak with the
// unrelated Secrets, and after the restart.
func (b *benchRun) memory() {
	b.r.add("RSS with N tokens", float64(b.rssTokens)/1024, "MiB", "", nil)
	b.r.add("RSS per token", float64(b.rssTokens-b.rssBefore)/float64(b.n), "KiB", "", nil)
	// The target is set at 10,000 tokens; with fewer, the per-token figure carries
	// more of what does not grow with them, and is reported only.
	perTokenAtPeak := float64(max(b.rssPeak, b.rssTokens)-b.rssBefore) / float64(b.n)
	if b.n >= 10000 {
		b.r.add("peak RSS per token (convergence and Secrets included)", perTokenAtPeak, "KiB", "<= 5", le(perTokenAtPeak, 5))
	} else {
		b.r.add("peak RSS per token (convergence and Secrets included)", perTokenAtPeak, "KiB", "", nil)
	}
	b.r.add("peak RSS with unrelated Secrets / without", float64(b.rssPeak)/float64(b.rssTokens), "ratio", "<= 1.10",
		le(float64(b.rssPeak)/float64(b.rssTokens), 1.10))
	b.r.add("RSS after the restart, unrelated Secrets present", float64(rss(b.t, b.c.OperatorPID()))/1024, "MiB", "", nil)
}

func createUnrelatedSecrets(t *testing.T, admin client.Client, count int) {
	framework.CreateNamespace(t, admin, "unrelated", nil)
	payload := []byte(strings.Repeat("x", 10*1024))
	parallel(count, 20, func(i int) {
		_ = admin.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i), Namespace: "unrelated"},
			Data: map[string][]byte{"blob": payload}})
	})
}

// sidsOf returns the account SIDs of the ApiTokens in ns, except those whose
// name starts with skip.
func sidsOf(t *testing.T, c client.Client, ns, skip string) map[string]bool {
	list := &tokensv1alpha1.ApiTokenList{}
	mustDo(t, c.List(t.Context(), list, client.InNamespace(ns)))
	sids := map[string]bool{}
	for _, at := range list.Items {
		if !strings.HasPrefix(at.Name, skip) && at.Status.AccountSID != "" {
			sids[at.Status.AccountSID] = true
		}
	}
	return sids
}

// cpuAtRest measures the operator's CPU at rest with the default resync (10
// minutes): the TokenBackend's resyncInterval is removed and the operator
// restarted, so that its first reads come at the default's steady rate; once its
// start-up passes are done, its user and system time over -cpu-window is the
// share of one core. The window must hold backend reads, or it measured an
// operator that does nothing.
func (b *benchRun) cpuAtRest() {
	t := b.t
	tb := &tokensv1alpha1.TokenBackend{}
	mustDo(t, b.admin.Get(b.ctx, client.ObjectKeyFromObject(b.tb), tb))
	patch := client.MergeFrom(tb.DeepCopy())
	tb.Spec.ResyncInterval = nil
	mustDo(t, b.admin.Patch(b.ctx, tb, patch))
	b.c.StopOperator()
	restarted := time.Now()
	mustDo(t, b.c.StartOperator(b.ctx))
	b.waitLeader()
	framework.Eventually(t, "the restarted operator's start-up passes are done", 5*framework.LongWait, func() error {
		if depth := queueDepth(b.c.OperatorMetricsURL, "apitoken"); depth != 0 {
			return fmt.Errorf("%v ApiTokens queued", depth)
		}
		return nil
	})
	time.Sleep(5 * time.Second)
	// Past the start-up and into the first reads, which come at the steady rate
	// (+3%) from the first pass on.
	time.Sleep(max(0, 30*time.Second-time.Since(restarted)))
	pid := b.c.OperatorPID()
	start, cpuStart := time.Now(), cpuSeconds(t, pid)
	from := b.marks().ts
	// The share of each tenth of the window, in the log: a share that falls
	// across the window is the start-up still settling, a flat one is the rest.
	var tenths []string
	for last, cpuLast := start, cpuStart; time.Since(start) < *cpuWindow; {
		time.Sleep(min(*cpuWindow/10, *cpuWindow-time.Since(start)))
		now, cpuNow := time.Now(), cpuSeconds(t, pid)
		tenths = append(tenths, fmt.Sprintf("%.2f", 100*(cpuNow-cpuLast)/now.Sub(last).Seconds()))
		last, cpuLast = now, cpuNow
	}
	share := 100 * (cpuSeconds(t, pid) - cpuStart) / time.Since(start).Seconds()
	t.Logf("CPU at rest by tenth of the window (%%): %s", strings.Join(tenths, " "))
	reads, _ := tokenReads(tokenServiceCounts(t, b.c.TokenServiceLogPath(), from, -1))
	// The profile of the same work comes after the measured window: the
	// profiler's own signals and the encoding of the profile cost the operator
	// CPU that is not its own. Half a minute shows where the rest goes; it is
	// not a figure.
	b.profile(fmt.Sprintf("profile?seconds=%d", int(min(*cpuWindow, 30*time.Second).Seconds())), "rest.cpu.pprof").wait()
	if reads == 0 {
		t.Fatalf("CPU at rest: no backend read in the %v window", *cpuWindow)
	}
	b.r.add("CPU at rest, default resync (share of one core)", share, "%", "<= 1", le(share, 1))
	b.r.add("backend reads per second in that window (separate)", float64(reads)/cpuWindow.Seconds(), "reads/s", "", nil)
	list := &tokensv1alpha1.ApiTokenList{}
	mustDo(t, b.admin.List(b.ctx, list))
	b.r.add("their steady rate: ApiTokens / 10 min (separate)", float64(len(list.Items))/600, "reads/s", "", nil)
}
