package controllers

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// driftChecker makes the routine drift checks of Ready ApiTokens without a pass.
// At each token's read time it sends the conditional read itself, with the
// ETag the token's last pass ended with; a 304 (nothing changed in the backend)
// only sets the next read one resync later. Anything else (a change, a token
// gone, an error, a backend not ready) queues the ApiToken, whose pass reads
// the token again and does what the answer asks.
//
// At rest almost every read is a 304, and a pass for each would cost the
// operator several times the read itself: the work queue, copies out of the
// cache, the comparison of the statuses. With 10,000 tokens that was most of
// its CPU at rest.
//
// Each backend has its own reader with its own bound on the reads in flight, so
// that a slow or throttling backend never delays another's checks. The checker
// runs only while the ApiToken controller runs, which is only while this
// process leads.
type driftChecker struct {
	registry *Registry
	clock    clock.Clock
	// checked is the reconciler's record of when each token was last read.
	checked *sync.Map
	// inFlight bounds the reads of one backend at a time.
	inFlight int

	mu      sync.Mutex
	tokens  map[types.NamespacedName]*driftEntry
	readers map[string]*backendReader
	// schedules counts calls of schedule: each entry's version.
	schedules uint64
	// ctx and queue are set when the controller starts the checker; entries
	// scheduled before wait for it.
	ctx   context.Context
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// checkInFlightRetry is how soon a pass that found the drift checker reading its
// ApiToken's backend token runs again: a read takes milliseconds, or the
// Retry-After (at most a few seconds) it waits out in-process.
const checkInFlightRetry = 200 * time.Millisecond

// driftEntry is one ApiToken's next check: what to read and when.
type driftEntry struct {
	uid     types.UID
	key     types.NamespacedName
	backend string
	sid     string
	etag    string
	due     time.Time
	// version is new at each schedule (unique in the checker), so that the answer
	// to a read started before a pass rescheduled or stopped the token's checks
	// does not undo what the pass did.
	version uint64
	// index is the entry's place in its reader's heap; -1 while it is out of it
	// (being read).
	index int
}

// backendReader holds the checks of one backend, earliest first.
type backendReader struct {
	name  string
	due   driftHeap
	wake  chan struct{} // the earliest entry changed
	slots chan struct{} // reads in flight
}

func newDriftChecker(registry *Registry, clk clock.Clock, checked *sync.Map, inFlight int) *driftChecker {
	return &driftChecker{
		registry: registry, clock: clk, checked: checked, inFlight: max(1, inFlight),
		tokens: map[types.NamespacedName]*driftEntry{}, readers: map[string]*backendReader{},
	}
}

// start is the checker's source.Func: the controller starts it with its work
// queue, once this process leads. It returns at once; the readers stop with ctx.
func (c *driftChecker) start(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctx, c.queue = ctx, queue
	for _, rd := range c.readers {
		go c.run(ctx, rd)
	}
	return nil
}

// schedule (re)sets the next check of a Ready ApiToken: a conditional read of
// its current backend token, with the ETag of its status, at due.
func (c *driftChecker) schedule(at *tokensv1alpha1.ApiToken, due time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := types.NamespacedName{Namespace: at.Namespace, Name: at.Name}
	e, ok := c.tokens[key]
	name := backendName(at)
	if ok && e.backend != name && e.index >= 0 {
		heap.Remove(&c.readers[e.backend].due, e.index)
	}
	if !ok {
		e = &driftEntry{key: key, index: -1}
		c.tokens[key] = e
	}
	e.uid, e.backend, e.sid, e.etag, e.due = at.UID, name, at.Status.AccountSID, at.Status.BackendETag, due
	c.schedules++
	e.version = c.schedules
	rd := c.reader(name)
	if e.index >= 0 {
		heap.Fix(&rd.due, e.index)
		rd.signalIfFirst(e)
		return
	}
	rd.push(e)
}

// stop ends the checks of an ApiToken: its passes take over (it is not Ready,
// paused, or gone).
func (c *driftChecker) stop(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.tokens[key]; ok {
		c.removeLocked(e)
	}
}

// removeLocked drops an entry from the checker, and from its reader's heap
// unless it is being read (the caller holds the lock).
func (c *driftChecker) removeLocked(e *driftEntry) {
	if e.index >= 0 {
		heap.Remove(&c.readers[e.backend].due, e.index)
	}
	delete(c.tokens, e.key)
}

// claim takes an ApiToken's checks from the checker for a pass, which reads and
// writes the backend token itself and schedules them again if it ends Ready. It
// fails while the checker's read of the token is in flight: the pass would send
// a second request for the token at the same time, and one sent before the
// first's 429 reached the client would not wait for its Retry-After.
func (c *driftChecker) claim(key types.NamespacedName) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.tokens[key]
	switch {
	case !ok:
		return true
	case e.index < 0:
		return false // being read
	}
	c.removeLocked(e)
	return true
}

// scheduled reports the next check of an ApiToken, if it has one.
func (c *driftChecker) scheduled(key types.NamespacedName) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.tokens[key]; ok {
		return e.due, true
	}
	return time.Time{}, false
}

// reader returns the reader of a backend, started when the checker is.
func (c *driftChecker) reader(name string) *backendReader {
	rd, ok := c.readers[name]
	if !ok {
		rd = &backendReader{name: name, wake: make(chan struct{}, 1), slots: make(chan struct{}, c.inFlight)}
		c.readers[name] = rd
		if c.ctx != nil {
			go c.run(c.ctx, rd)
		}
	}
	return rd
}

// push adds a check to the reader's heap (the caller holds the checker's lock).
func (rd *backendReader) push(e *driftEntry) {
	heap.Push(&rd.due, e)
	rd.signalIfFirst(e)
}

// signalIfFirst wakes the reader when e is now its earliest check: it may be
// sleeping until a later one.
func (rd *backendReader) signalIfFirst(e *driftEntry) {
	if rd.due[0] != e {
		return
	}
	select {
	case rd.wake <- struct{}{}:
	default:
	}
}

// check is what one read needs, copied out under the lock.
type check struct {
	uid     types.UID
	key     types.NamespacedName
	sid     string
	etag    string
	version uint64
}

// run reads the backend's tokens as they fall due, at most inFlight at once,
// waking once a tick (checkTick) for all that fell due since.
func (c *driftChecker) run(ctx context.Context, rd *backendReader) {
	timer := c.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case rd.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		next, wait := c.nextDue(rd)
		if next != nil {
			go c.read(ctx, rd, *next)
			continue
		}
		<-rd.slots
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(untilTick(c.clock.Now(), wait, checkTick(c.resyncOf(rd.name))))
		select {
		case <-timer.C():
		case <-rd.wake:
		case <-ctx.Done():
			return
		}
	}
}

// checkTick is how far apart a backend's reader wakes: it reads together every
// check that fell due since it last woke. On an idle machine, waking a process
// costs more than the read it wakes for: at 10,000 tokens and the default
// resync, one wake a second for 17 reads costs a tenth of what 17 wakes do.
// A tick is a 600th of the resync interval, at most a second: each holds about
// tokens / 600 reads whatever the interval, so that reading a tick late or early
// moves the reads of any 10 seconds by that many (under 2 % of them from a
// 1-minute interval down), and a check is never read before it is due and at
// most one tick after, well within the 3 % of the interval that the first reads
// after a restart leave free (firstReadSpread).
func checkTick(resync time.Duration) time.Duration {
	return max(time.Millisecond, min(time.Second, resync/600))
}

// untilTick is how long to sleep for a wait that ends at the first tick (a
// multiple of tick in absolute time, the same for every reader) at or after it.
func untilTick(now time.Time, wait, tick time.Duration) time.Duration {
	at := now.Add(wait)
	wake := at.Truncate(tick)
	if wake.Before(at) {
		wake = wake.Add(tick)
	}
	return wake.Sub(now)
}

// resyncOf is the backend's resync interval, down or not; the default when it
// is not registered.
func (c *driftChecker) resyncOf(name string) time.Duration {
	if e, ok := c.registry.entry(name); ok && e.resync > 0 {
		return e.resync
	}
	return DefaultResyncInterval
}

// nextDue takes the backend's earliest check out of its heap when it is due;
// otherwise it says how long until it is (an hour when there is none).
func (c *driftChecker) nextDue(rd *backendReader) (*check, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(rd.due) == 0 {
		return nil, time.Hour
	}
	e := rd.due[0]
	if wait := e.due.Sub(c.clock.Now()); wait > 0 {
		return nil, wait
	}
	heap.Pop(&rd.due)
	return &check{uid: e.uid, key: e.key, sid: e.sid, etag: e.etag, version: e.version}, 0
}

// read sends one conditional read. A 304 schedules the next one a resync
// later; any other answer hands the ApiToken to a pass, which reads it again.
func (c *driftChecker) read(ctx context.Context, rd *backendReader, ck check) {
	defer func() { <-rd.slots }()
	be, resync, state := c.registry.get(rd.name)
	if state != backendReady {
		c.handOver(ck)
		return
	}
	_, modified, err := be.Get(ctx, ck.sid, ck.etag)
	if err != nil || modified {
		c.handOver(ck)
		return
	}
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.tokens[ck.key]
	if !ok || e.version != ck.version {
		return // a pass rescheduled or stopped the checks meanwhile
	}
	c.checked.Store(ck.uid, now)
	e.due = now.Add(resync)
	rd.push(e)
}

// handOver queues the ApiToken for a pass that reads its backend token in
// full, unless a pass has rescheduled it since the read began.
func (c *driftChecker) handOver(ck check) {
	c.mu.Lock()
	e, ok := c.tokens[ck.key]
	current := ok && e.version == ck.version
	if current {
		c.removeLocked(e)
	}
	queue := c.queue
	c.mu.Unlock()
	if !current {
		return
	}
	c.checked.Store(ck.uid, time.Time{})
	queue.Add(reconcile.Request{NamespacedName: ck.key})
}

// driftHeap orders checks by due time.
type driftHeap []*driftEntry

func (h driftHeap) Len() int           { return len(h) }
func (h driftHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h driftHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *driftHeap) Push(x any) {
	e := x.(*driftEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *driftHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
