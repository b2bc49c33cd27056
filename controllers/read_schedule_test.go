package controllers

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The read schedule with a fake clock and a fake backend: no cluster, no HTTP.
// Each test runs in milliseconds; the readers are real goroutines, so the tests
// wait (briefly, in real time) for what they do after each step of the clock.

const scheduleResync = time.Minute

// fakeReads is a backend whose conditional reads answer 304 unless a token is
// marked changed; it reports each read and can hold them.
type fakeReads struct {
	backend.Backend // the other calls are not used by the schedule
	mu              sync.Mutex
	changed         map[string]bool
	held            chan struct{}
	reads           chan string // "sid etag" of each read
}

func newFakeReads() *fakeReads {
	return &fakeReads{changed: map[string]bool{}, reads: make(chan string, 100)}
}

func (f *fakeReads) Get(ctx context.Context, sid, etag string) (*backend.Token, bool, error) {
	f.mu.Lock()
	held, changed := f.held, f.changed[sid]
	f.mu.Unlock()
	f.reads <- sid + " " + etag
	if held != nil {
		select {
		case <-held:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	if changed {
		return &backend.Token{SID: sid}, true, nil
	}
	return nil, false, nil
}

// hold makes reads wait until the returned function is called.
func (f *fakeReads) hold() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = make(chan struct{})
	held := f.held
	return func() {
		f.mu.Lock()
		f.held = nil
		f.mu.Unlock()
		close(held)
	}
}

func (f *fakeReads) change(sid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changed[sid] = true
}

// fakeSource registers fake backends by name.
type fakeSource struct {
	mu       sync.Mutex
	backends map[string]*fakeReads
	down     map[string]bool
}

func (s *fakeSource) get(name string) (backend.Backend, time.Duration, backendState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if be, ok := s.backends[name]; ok && !s.down[name] {
		return be, scheduleResync, backendReady
	}
	if s.down[name] {
		return nil, 0, backendDown
	}
	return nil, 0, backendMissing
}

func (s *fakeSource) resyncOf(string) time.Duration { return scheduleResync }

type scheduleFixture struct {
	t        *testing.T
	clock    *clocktesting.FakeClock
	source   *fakeSource
	schedule *readSchedule
	queue    workqueue.TypedRateLimitingInterface[reconcile.Request]
}

func newScheduleFixture(t *testing.T, backends ...string) *scheduleFixture {
	f := &scheduleFixture{
		t:      t,
		clock:  clocktesting.NewFakeClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)),
		source: &fakeSource{backends: map[string]*fakeReads{}, down: map[string]bool{}},
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]()),
	}
	for _, name := range backends {
		f.source.backends[name] = newFakeReads()
	}
	f.schedule = newReadSchedule(f.source, f.clock, 2)
	t.Cleanup(f.queue.ShutDown)
	if err := f.schedule.start(t.Context(), f.queue); err != nil {
		t.Fatal(err)
	}
	return f
}

func scheduledToken(name, backendName string) *tokensv1alpha1.ApiToken {
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}}
	at.Spec.BackendRef.Name = backendName
	at.Status.AccountSID, at.Status.BackendETag = "TK-"+name, `"v1"`
	return at
}

// passEndingReady is a pass that read the token and ended Ready.
func (f *scheduleFixture) passEndingReady(at *tokensv1alpha1.ApiToken) {
	f.t.Helper()
	lease, ok := f.schedule.claim(at)
	if !ok {
		f.t.Fatalf("claim of %s refused", at.Name)
	}
	lease.read()
	lease.end(at, scheduleResync, true, specSum{})
}

// step moves the clock once the readers sleep on it.
func (f *scheduleFixture) step(d time.Duration) {
	f.t.Helper()
	f.waitFor("the readers to sleep", f.clock.HasWaiters)
	f.clock.Step(d)
}

func (f *scheduleFixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// nextRead waits for the next read of a backend.
func (f *scheduleFixture) nextRead(name string) string {
	f.t.Helper()
	select {
	case r := <-f.source.backends[name].reads:
		return r
	case <-time.After(5 * time.Second):
		f.t.Fatalf("no read of backend %s", name)
		return ""
	}
}

// noRead checks that a backend is not read while the reader settles.
func (f *scheduleFixture) noRead(name string) {
	f.t.Helper()
	select {
	case r := <-f.source.backends[name].reads:
		f.t.Fatalf("unexpected read of backend %s: %s", name, r)
	case <-time.After(20 * time.Millisecond):
	}
}

// queued waits for the queue to hold a request and returns it.
func (f *scheduleFixture) queued() reconcile.Request {
	f.t.Helper()
	f.waitFor("a queued pass", func() bool { return f.queue.Len() > 0 })
	req, _ := f.queue.Get()
	f.queue.Done(req)
	return req
}

// handedToAPass checks that the reader queued the ApiToken and let go of it, and
// claims it as the queued pass does.
func (f *scheduleFixture) handedToAPass(at *tokensv1alpha1.ApiToken) *readLease {
	f.t.Helper()
	if diff := cmp.Diff(requestFor(at), f.queued()); diff != "" {
		f.t.Fatalf("queued (-want +got):\n%s", diff)
	}
	if _, ok := f.schedule.nextReadOf(at.UID); ok {
		f.t.Errorf("the reader kept the token the queued pass is to have")
	}
	lease, ok := f.schedule.claim(at)
	if !ok {
		f.t.Fatal("the queued pass's claim was refused")
	}
	return lease
}

func requestFor(at *tokensv1alpha1.ApiToken) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: at.Namespace, Name: at.Name}}
}

func TestReaderReadsAtRestWithoutAPass(t *testing.T) {
	f := newScheduleFixture(t, "main")
	at := scheduledToken("quiet", "main")
	f.passEndingReady(at)
	if due, ok := f.schedule.nextReadOf(at.UID); !ok || !due.Equal(f.clock.Now().Add(scheduleResync)) {
		t.Fatalf("next read = %v (scheduled %v), want one resync from the pass's read", due, ok)
	}
	f.noRead("main")
	for range 3 {
		f.step(scheduleResync + checkTick(scheduleResync))
		if diff := cmp.Diff(`TK-quiet "v1"`, f.nextRead("main")); diff != "" {
			t.Fatalf("read (-want +got):\n%s", diff)
		}
		f.waitFor("the next read to be scheduled", func() bool { _, ok := f.schedule.nextReadOf(at.UID); return ok })
	}
	if f.queue.Len() != 0 {
		t.Errorf("a 304 queued a pass")
	}
}

func TestReaderHandsAChangeToAPassThatReadsInFull(t *testing.T) {
	f := newScheduleFixture(t, "main")
	at := scheduledToken("edited", "main")
	f.passEndingReady(at)
	f.source.backends["main"].change(at.Status.AccountSID)
	f.step(scheduleResync + checkTick(scheduleResync))
	f.nextRead("main")
	lease := f.handedToAPass(at)
	if last := lease.lastRead(scheduleResync); !last.IsZero() {
		t.Errorf("lastRead = %v, want zero: the pass must read the token in full", last)
	}
}

func TestReaderHandsOverWhileTheBackendIsDown(t *testing.T) {
	f := newScheduleFixture(t, "main")
	at := scheduledToken("waiting", "main")
	f.passEndingReady(at)
	f.source.mu.Lock()
	f.source.down["main"] = true
	f.source.mu.Unlock()
	f.step(scheduleResync + checkTick(scheduleResync))
	if diff := cmp.Diff(requestFor(at), f.queued()); diff != "" {
		t.Fatalf("queued (-want +got):\n%s", diff)
	}
	f.noRead("main")
}

// A pass refused while the reader reads needs no requeue of its own: the read's
// end queues it, and a 304 counts as the pass's read.
func TestClaimRefusedDuringAReadIsQueuedWhenTheReadEnds(t *testing.T) {
	f := newScheduleFixture(t, "main")
	at := scheduledToken("busy", "main")
	f.passEndingReady(at)
	release := f.source.backends["main"].hold()
	f.step(scheduleResync + checkTick(scheduleResync))
	f.nextRead("main")
	if _, ok := f.schedule.claim(at); ok {
		t.Fatal("a pass claimed the token while its read was in flight")
	}
	release()
	lease := f.handedToAPass(at)
	if last := lease.lastRead(scheduleResync); !last.Equal(f.clock.Now()) {
		t.Errorf("lastRead = %v, want the 304's time %v", last, f.clock.Now())
	}
}

func TestLeaseEndsThatAreNotReadyLeaveTheTokenToItsPasses(t *testing.T) {
	f := newScheduleFixture(t, "main")
	at := scheduledToken("stalled", "main")
	lease, _ := f.schedule.claim(at)
	lease.read()
	lease.end(at, scheduleResync, false, specSum{})
	if _, ok := f.schedule.nextReadOf(at.UID); ok {
		t.Fatal("a pass that did not end Ready scheduled a read")
	}

	// readAtNextPass: the next Ready end schedules a read at once.
	lease, _ = f.schedule.claim(at)
	lease.readAtNextPass()
	lease.end(at, scheduleResync, true, specSum{})
	if due, _ := f.schedule.nextReadOf(at.UID); !due.Equal(f.clock.Now()) {
		t.Errorf("next read = %v, want now: a read was asked for", due)
	}
}

// The first reads after a start are spread over firstReadSpread (95 %) of one
// resync interval, about evenly, and a token met again keeps its slot.
func TestFirstReadsAreSpreadOverOneInterval(t *testing.T) {
	f := newScheduleFixture(t, "main")
	start := f.clock.Now()
	const n = 600
	perTenth := make([]int, 10)
	for i := range n {
		lease, _ := f.schedule.claim(scheduledToken("t"+string(rune('a'+i%26))+time.Duration(i).String(), "main"))
		due := lease.lastRead(scheduleResync).Add(scheduleResync)
		if due.Before(start) || !due.Before(start.Add(time.Duration(firstReadSpread*float64(scheduleResync)))) {
			t.Fatalf("first read %d at %v, outside the spread", i, due.Sub(start))
		}
		perTenth[int(due.Sub(start)*10/scheduleResync)]++
		if again := lease.lastRead(scheduleResync).Add(scheduleResync); !again.Equal(due) {
			t.Fatalf("token %d moved from %v to %v", i, due, again)
		}
	}
	perFullTenth := int(math.Round(n / (10 * firstReadSpread)))
	for i, c := range perTenth[:9] {
		if c < perFullTenth-3 || c > perFullTenth+3 {
			t.Errorf("tenth %d of the interval holds %d first reads, want %d±3", i, c, perFullTenth)
		}
	}
}

// A start-up whose first passes take seconds meets tokens after the slot the
// spread gave them. Read at the moment met, those came all at once at the
// first tick (make bench-scale: 246 reads in the second after leadership
// against 178 in each after). They get slots in what is left of the spread
// instead: none before it is met, none after the spread, no tenth crowded.
func TestFirstReadsOfTokensMetLateAreSpreadToo(t *testing.T) {
	f := newScheduleFixture(t, "main")
	start := f.clock.Now()
	spreadEnd := start.Add(time.Duration(firstReadSpread * float64(scheduleResync)))
	const n = 600
	perTenth := make([]int, 10)
	for i := range n {
		// Met over the first tenth of the interval, as a slow start-up meets them.
		met := start.Add(scheduleResync / 10 * time.Duration(i) / n)
		f.clock.SetTime(met)
		lease, _ := f.schedule.claim(scheduledToken("late"+time.Duration(i).String(), "main"))
		due := lease.lastRead(scheduleResync).Add(scheduleResync)
		if due.Before(met) || !due.Before(spreadEnd) {
			t.Fatalf("token %d met %v after the start: first read at %v, want from then until %v", i, met.Sub(start), due.Sub(start), spreadEnd.Sub(start))
		}
		perTenth[int(due.Sub(start)*10/scheduleResync)]++
	}
	perFullTenth := int(math.Round(n / (10 * firstReadSpread)))
	for i, c := range perTenth[:9] {
		if c > perFullTenth+8 {
			t.Errorf("tenth %d of the interval holds %d first reads, want at most %d: %v", i, c, perFullTenth+8, perTenth)
		}
	}
}

func TestGoneApiTokensLeaveNothingBehind(t *testing.T) {
	f := newScheduleFixture(t, "main")
	paused := scheduledToken("paused-from-creation", "main")
	lease, _ := f.schedule.claim(paused)
	lease.end(paused, scheduleResync, false, specSum{})
	ready := scheduledToken("ready", "main")
	f.passEndingReady(ready)
	released := scheduledToken("released", "main")
	lease, _ = f.schedule.claim(released)
	lease.forget()
	lease.end(released, scheduleResync, true, specSum{})

	for _, at := range []*tokensv1alpha1.ApiToken{paused, ready} {
		uid, ok := f.schedule.forgetName(requestFor(at).NamespacedName)
		if !ok || uid != at.UID {
			t.Errorf("forgetName(%s) = %v, %v", at.Name, uid, ok)
		}
	}
	if n := f.schedule.size(); n != 0 {
		t.Errorf("the schedule holds %d tokens, want 0", n)
	}
	f.step(scheduleResync + checkTick(scheduleResync))
	f.noRead("main")
}

func TestANameMadeAgainDropsTheOldToken(t *testing.T) {
	f := newScheduleFixture(t, "main")
	old := scheduledToken("again", "main")
	f.passEndingReady(old)
	again := old.DeepCopy()
	again.UID = "uid-again-2"
	f.passEndingReady(again)
	if n := f.schedule.size(); n != 1 {
		t.Fatalf("the schedule holds %d tokens, want 1", n)
	}
	if _, ok := f.schedule.nextReadOf(old.UID); ok {
		t.Error("the old token is still scheduled")
	}
}

func TestADroppedBackendStopsItsReader(t *testing.T) {
	f := newScheduleFixture(t, "gone", "kept")
	dropped := scheduledToken("dropped", "gone")
	kept := scheduledToken("kept", "kept")
	f.passEndingReady(dropped)
	f.passEndingReady(kept)
	f.waitFor("both readers to sleep", func() bool { return f.schedule.readerCount() == 2 && f.clock.HasWaiters() })
	f.schedule.dropBackend("gone")
	if n := f.schedule.readerCount(); n != 1 {
		t.Fatalf("%d readers, want 1", n)
	}
	f.step(scheduleResync + checkTick(scheduleResync))
	f.nextRead("kept")
	f.noRead("gone")
	if _, ok := f.schedule.nextReadOf(dropped.UID); ok {
		t.Error("a token of the dropped backend is still scheduled")
	}
	// Its next pass can claim it; ending Ready again (a new TokenBackend of the
	// same name) starts a new reader.
	f.passEndingReady(dropped)
	if n := f.schedule.readerCount(); n != 2 {
		t.Errorf("%d readers, want 2", n)
	}
}

func TestASlowBackendDoesNotDelayAnother(t *testing.T) {
	f := newScheduleFixture(t, "slow", "fast")
	release := f.source.backends["slow"].hold()
	defer release()
	for _, at := range []*tokensv1alpha1.ApiToken{scheduledToken("s1", "slow"), scheduledToken("s2", "slow"), scheduledToken("s3", "slow"), scheduledToken("f1", "fast")} {
		f.passEndingReady(at)
	}
	f.step(scheduleResync + checkTick(scheduleResync))
	f.nextRead("slow")
	f.nextRead("slow")
	f.noRead("slow") // two in flight at most
	if got := f.nextRead("fast"); got != `TK-f1 "v1"` {
		t.Errorf("fast backend read %q", got)
	}
}

func TestCheckTick(t *testing.T) {
	for resync, want := range map[time.Duration]time.Duration{
		10 * time.Hour:         time.Second,
		10 * time.Minute:       time.Second,
		time.Minute:            100 * time.Millisecond,
		time.Second:            time.Second / 600,
		100 * time.Microsecond: time.Millisecond,
	} {
		if got := checkTick(resync); got != want {
			t.Errorf("checkTick(%v) = %v, want %v", resync, got, want)
		}
	}
}

func TestUntilTick(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		now        time.Time
		wait, want time.Duration
	}{
		"due now, on a tick":         {now: base, wait: 0, want: 0},
		"due now, between ticks":     {now: base.Add(300 * time.Millisecond), wait: 0, want: 700 * time.Millisecond},
		"due later, on a tick":       {now: base, wait: 2 * time.Second, want: 2 * time.Second},
		"due later, between ticks":   {now: base, wait: 1500 * time.Millisecond, want: 2 * time.Second},
		"due later, from mid-tick":   {now: base.Add(250 * time.Millisecond), wait: 500 * time.Millisecond, want: 750 * time.Millisecond},
		"never early: rounded up":    {now: base, wait: time.Nanosecond, want: time.Second},
		"an hour: a multiple itself": {now: base, wait: time.Hour, want: time.Hour},
	} {
		if got := untilTick(tc.now, tc.wait, time.Second); got != tc.want {
			t.Errorf("%s: untilTick = %v, want %v", name, got, tc.want)
		}
	}
}
