package controllers

import (
	"net/http"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The drift checker against the suite's real tokenservice, without a manager:
// its own registry entries, its own work queue, and a transport that counts
// (and, when asked, holds) the reads.

const checkerResync = 300 * time.Millisecond

// countingTransport counts the GETs of each token and holds them while held is
// set.
type countingTransport struct {
	mu    sync.Mutex
	reads map[string]int
	held  chan struct{} // nil: reads go through
}

func (ct *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ct.mu.Lock()
	if req.Method == http.MethodGet {
		ct.reads[req.URL.Path]++
	}
	held := ct.held
	ct.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (ct *countingTransport) readsOf(sid string) int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.reads["/v1/tokens/"+sid]
}

func (ct *countingTransport) hold() chan struct{} {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.held = make(chan struct{})
	return ct.held
}

type checkerFixture struct {
	checker *driftChecker
	queue   workqueue.TypedRateLimitingInterface[reconcile.Request]
	checked *sync.Map
	backend map[string]*countingTransport
}

// newCheckerFixture starts a checker with one registered backend per name,
// each reached through its own counting transport.
func newCheckerFixture(t *testing.T, names ...string) *checkerFixture {
	t.Helper()
	f := &checkerFixture{
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]()),
		checked: &sync.Map{},
		backend: map[string]*countingTransport{},
	}
	registry := NewRegistry()
	for _, name := range names {
		transport := &countingTransport{reads: map[string]int{}}
		be, err := backend.New(backend.Options{URL: tsURL, AdminKey: testAdminKey, Transport: transport, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		registry.entries[name] = registryEntry{client: be, resync: checkerResync}
		f.backend[name] = transport
	}
	f.checker = newDriftChecker(registry, clock.RealClock{}, f.checked, 2)
	t.Cleanup(f.queue.ShutDown)
	if err := f.checker.start(t.Context(), f.queue); err != nil {
		t.Fatal(err)
	}
	return f
}

// readyToken makes a backend token and an ApiToken that names it, as a pass
// that ended Ready leaves it.
func readyToken(t *testing.T, name, backendName string) *tokensv1alpha1.ApiToken {
	t.Helper()
	tok, _, err := tsAdmin.Create(t.Context(), "drift-checker-"+name+"-"+time.Now().Format(time.RFC3339Nano), backend.CreateRequest{
		Name: name, PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}, State: backend.StateEnabled, ExternalID: name,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tsAdmin.Delete(t.Context(), tok.SID) })
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Namespace: "checker", Name: name, UID: types.UID(name)}}
	at.Spec.BackendRef.Name = backendName
	at.Status.AccountSID, at.Status.BackendETag = tok.SID, tok.ETag
	return at
}

func keyOf(at *tokensv1alpha1.ApiToken) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: at.Namespace, Name: at.Name}}
}

// queued reports what the queue holds, without waiting.
func (f *checkerFixture) queued() []reconcile.Request {
	var out []reconcile.Request
	for f.queue.Len() > 0 {
		req, _ := f.queue.Get()
		f.queue.Done(req)
		out = append(out, req)
	}
	return out
}

func TestDriftCheckerReadsAtRestWithoutAPass(t *testing.T) {
	g := NewWithT(t)
	f := newCheckerFixture(t, "default")
	at := readyToken(t, "unchanged", "default")
	f.checker.schedule(at, time.Now().Add(100*time.Millisecond))

	g.Eventually(func() int { return f.backend["default"].readsOf(at.Status.AccountSID) }, 5*time.Second, 20*time.Millisecond).Should(BeNumerically(">=", 3))
	g.Expect(f.queued()).To(BeEmpty(), "a 304 needs no pass")
	last, ok := f.checked.Load(at.UID)
	g.Expect(ok).To(BeTrue())
	g.Expect(last.(time.Time)).To(BeTemporally("~", time.Now(), 2*checkerResync), "each 304 is recorded as a read")
	due, ok := f.checker.scheduled(client.ObjectKeyFromObject(at))
	g.Expect(ok).To(BeTrue())
	g.Expect(due).To(BeTemporally("~", last.(time.Time).Add(checkerResync), time.Millisecond), "the next read is one resync after the last")

	// One read per resync and no more (a slow machine may make fewer).
	before := f.backend["default"].readsOf(at.Status.AccountSID)
	time.Sleep(10 * checkerResync)
	g.Expect(f.backend["default"].readsOf(at.Status.AccountSID) - before).To(BeNumerically("<=", 11))

	f.checker.stop(client.ObjectKeyFromObject(at))
	stopped := f.backend["default"].readsOf(at.Status.AccountSID)
	time.Sleep(3 * checkerResync)
	g.Expect(f.backend["default"].readsOf(at.Status.AccountSID)).To(BeNumerically("<=", stopped+1), "no read after stop but one in flight")
	_, ok = f.checker.scheduled(client.ObjectKeyFromObject(at))
	g.Expect(ok).To(BeFalse())
}

func TestDriftCheckerHandsChangesToAPass(t *testing.T) {
	g := NewWithT(t)
	f := newCheckerFixture(t, "default")
	changed := readyToken(t, "changed", "default")
	gone := readyToken(t, "gone", "default")
	stale := readyToken(t, "stale-etag", "default")
	stale.Status.BackendETag = `"not-the-current-one"`

	_, err := tsAdmin.Update(t.Context(), changed.Status.AccountSID, "", backend.TokenPatch{Description: ptr.To("edited in the backend")})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tsAdmin.Delete(t.Context(), gone.Status.AccountSID)).To(Succeed())
	now := time.Now()
	for _, at := range []*tokensv1alpha1.ApiToken{changed, gone, stale} {
		f.checked.Store(at.UID, now)
		f.checker.schedule(at, now)
	}

	var got []reconcile.Request
	g.Eventually(func() []reconcile.Request { got = append(got, f.queued()...); return got }, 5*time.Second, 20*time.Millisecond).
		Should(ConsistOf(keyOf(changed), keyOf(gone), keyOf(stale)))
	for _, at := range []*tokensv1alpha1.ApiToken{changed, gone, stale} {
		_, ok := f.checker.scheduled(client.ObjectKeyFromObject(at))
		g.Expect(ok).To(BeFalse(), "%s: its pass takes over", at.Name)
		last, _ := f.checked.Load(at.UID)
		g.Expect(last).To(Equal(time.Time{}), "%s: its pass reads the token in full", at.Name)
	}
}

func TestDriftCheckerHandsOverWhenTheBackendIsNotReady(t *testing.T) {
	g := NewWithT(t)
	f := newCheckerFixture(t, "default")
	at := readyToken(t, "backend-down", "default")
	f.checker.registry.markDown("default")
	f.checker.schedule(at, time.Now())
	g.Eventually(f.queued, 5*time.Second, 20*time.Millisecond).Should(ConsistOf(keyOf(at)))
	g.Expect(f.backend["default"].readsOf(at.Status.AccountSID)).To(BeZero(), "a backend known to be down is not called")
}

// A read that was sent before a pass rescheduled the token does not undo the
// pass's schedule, whatever it answers.
func TestDriftCheckerKeepsAPassesScheduleOverAnOlderRead(t *testing.T) {
	g := NewWithT(t)
	f := newCheckerFixture(t, "default")
	at := readyToken(t, "rescheduled", "default")
	release := f.backend["default"].hold()
	f.checker.schedule(at, time.Now())
	g.Eventually(func() int { return f.backend["default"].readsOf(at.Status.AccountSID) }, 5*time.Second, 10*time.Millisecond).Should(Equal(1))

	// The pass changed the token (a new ETag) and reschedules it while the read
	// of the old version is held; the read then answers 200.
	updated, err := tsAdmin.Update(t.Context(), at.Status.AccountSID, "", backend.TokenPatch{Description: ptr.To("changed by the pass")})
	g.Expect(err).NotTo(HaveOccurred())
	at.Status.BackendETag = updated.ETag
	later := time.Now().Add(time.Hour)
	f.checker.schedule(at, later)
	close(release)

	g.Consistently(f.queued, 3*checkerResync, 20*time.Millisecond).Should(BeEmpty())
	due, ok := f.checker.scheduled(client.ObjectKeyFromObject(at))
	g.Expect(ok).To(BeTrue())
	g.Expect(due).To(Equal(later))
}

// A pass waits for the checker's read of its token to end, then takes the
// token's checks over until it schedules them again.
func TestDriftCheckerLetsAPassClaimATokenOnlyBetweenReads(t *testing.T) {
	g := NewWithT(t)
	f := newCheckerFixture(t, "default")
	at := readyToken(t, "claimed", "default")
	key := client.ObjectKeyFromObject(at)
	release := f.backend["default"].hold()
	f.checker.schedule(at, time.Now())
	g.Eventually(func() int { return f.backend["default"].readsOf(at.Status.AccountSID) }, 5*time.Second, 10*time.Millisecond).Should(Equal(1))
	g.Expect(f.checker.claim(key)).To(BeFalse(), "the read is in flight")

	close(release)
	g.Eventually(func() bool { return f.checker.claim(key) }, 5*time.Second, 10*time.Millisecond).Should(BeTrue())
	_, ok := f.checker.scheduled(key)
	g.Expect(ok).To(BeFalse(), "the pass has the token")
	g.Consistently(func() int { return f.backend["default"].readsOf(at.Status.AccountSID) }, 3*checkerResync, 20*time.Millisecond).Should(Equal(1))
	g.Expect(f.checker.claim(key)).To(BeTrue(), "a token without checks is free")
}

// A backend whose reads hang holds only its own checks.
func TestDriftCheckerIsolatesASlowBackend(t *testing.T) {
	g := NewWithT(t)
	f := newCheckerFixture(t, "slow", "fast")
	release := f.backend["slow"].hold()
	defer close(release)
	now := time.Now()
	for i := range 5 {
		f.checker.schedule(readyToken(t, "slow-"+string(rune('a'+i)), "slow"), now)
	}
	fast := readyToken(t, "fast", "fast")
	f.checker.schedule(fast, now.Add(100*time.Millisecond))

	g.Eventually(func() int { return f.backend["fast"].readsOf(fast.Status.AccountSID) }, 5*time.Second, 20*time.Millisecond).Should(BeNumerically(">=", 2))
	f.backend["slow"].mu.Lock()
	slowReads := len(f.backend["slow"].reads)
	f.backend["slow"].mu.Unlock()
	g.Expect(slowReads).To(Equal(2), "the slow backend has its two reads in flight, no more")
}

func TestCheckTick(t *testing.T) {
	tests := map[time.Duration]time.Duration{
		time.Hour:             time.Second,
		DefaultResyncInterval: time.Second,
		time.Minute:           100 * time.Millisecond,
		5 * time.Second:       8333333 * time.Nanosecond,
		checkerResync:         time.Millisecond,
		time.Microsecond:      time.Millisecond,
	}
	for resync, want := range tests {
		if got := checkTick(resync); got != want {
			t.Errorf("checkTick(%v) = %v, want %v", resync, got, want)
		}
	}
}

func TestUntilTick(t *testing.T) {
	base := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		now  time.Time
		wait time.Duration
		want time.Duration
	}{
		"due on a tick":               {now: base, wait: time.Second, want: time.Second},
		"due between ticks: the next": {now: base, wait: 300 * time.Millisecond, want: time.Second},
		"off-grid now":                {now: base.Add(700 * time.Millisecond), wait: 100 * time.Millisecond, want: 300 * time.Millisecond},
		"due now, on a tick":          {now: base, wait: 0, want: 0},
		"due now, between ticks":      {now: base.Add(200 * time.Millisecond), wait: 0, want: 800 * time.Millisecond},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := untilTick(tc.now, tc.wait, time.Second); got != tc.want {
				t.Errorf("untilTick = %v, want %v", got, tc.want)
			}
		})
	}
}
