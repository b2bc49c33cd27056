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
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// readSchedule alone decides when each ApiToken's backend token is read next
// (docs/architecture.md, "read scheduling"). Under the ApiToken's UID it holds:
//   - when this process last read the token (zero: the next pass must read it),
//     and for a token it has not read yet, a first read spread over one resync
//     interval after the process started (firstReadOffset), so that a restart
//     does not read every token at once;
//   - who holds the token: nobody, a pass (a lease), or its backend's reader;
//   - the reader of each backend, which makes the routine conditional reads of
//     Ready ApiTokens between passes, and stops with its TokenBackend.
//
// A pass claims its ApiToken before any backend call and gets a lease. Only the
// lease's end hands the token to its reader (the pass ended Ready) or leaves it
// to the pass's own requeues, and only a lease forgets a token. A pass and a
// reader therefore never read the same token at once: a read sent beside another
// before the first's 429 reached the client would not wait for its Retry-After.
//
// At rest almost every read is a 304, and a pass for each would cost the
// operator several times the read itself (the work queue, copies out of the
// cache, the comparison of statuses): with 10,000 tokens that was most of its
// CPU at rest. So a reader sends the conditional read itself, with the ETag the
// token's last pass ended with; a 304 sets the next read one resync later, and
// anything else (a change, a token gone, an error, a backend not ready) queues
// the ApiToken, whose pass reads the token again and does what the answer asks.
// Each backend's reader bounds its own reads in flight, so that a slow or
// throttling backend never delays another's.
type readSchedule struct {
	backends backendSource
	clock    clock.Clock
	// inFlight bounds the reads of one backend at a time.
	inFlight int

	mu sync.Mutex
	// tokens holds each ApiToken's entry by name; the entry's UID tells a token
	// deleted and made again under the same name from the one it replaced.
	tokens  map[types.NamespacedName]*readEntry
	readers map[string]*backendReader
	// started is when the first token was met unread; firstReads counts those
	// met, lateReads those met after their slot (lateSlotLocked).
	started               time.Time
	firstReads, lateReads uint64
	// ctx and queue are set when the controller starts the schedule (once this
	// process leads); readers made before wait for it.
	ctx   context.Context
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// backendSource is what the schedule needs of the registry: the client, resync
// interval and state of a backend by name.
type backendSource interface {
	get(name string) (backend.Backend, time.Duration, backendState)
	resyncOf(name string) time.Duration
}

// holder says who holds a token's reads.
type holder int

const (
	heldByNobody holder = iota // the pass's own requeues bring it back
	heldByPass                 // a pass holds the lease
	scheduled                  // in its reader's heap, waiting for its time
	reading                    // its reader's read is in flight
)

// readEntry is what the schedule knows of one ApiToken.
type readEntry struct {
	uid types.UID
	key types.NamespacedName
	// last is when the token was last read; zero asks the next pass to read it.
	// lastKnown is false until the first pass gives the token a first-read slot.
	last      time.Time
	lastKnown bool
	holder    holder
	// waiting records a pass refused while the reader read: the read's end
	// queues the ApiToken.
	waiting bool
	// spec is the digest of the backend fields of the spec the token was last
	// seen to match (specDigest), when the last pass ended Ready.
	spec specSum
	// What the reader reads, and when: set when a lease ends Ready.
	backend, sid, etag string
	due                time.Time
	// index is the entry's place in its reader's heap while it is scheduled.
	index int
}

// backendReader makes the routine reads of one backend, earliest first.
type backendReader struct {
	name   string
	due    readHeap
	wake   chan struct{} // the earliest entry changed
	slots  chan struct{} // reads in flight
	cancel context.CancelFunc
}

func newReadSchedule(backends backendSource, clk clock.Clock, inFlight int) *readSchedule {
	return &readSchedule{
		backends: backends, clock: clk, inFlight: max(1, inFlight),
		tokens:  map[types.NamespacedName]*readEntry{},
		readers: map[string]*backendReader{},
	}
}

// start is the schedule's source.Func: the controller starts it with its work
// queue once this process leads. It returns at once; the readers stop with ctx.
func (s *readSchedule) start(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx, s.queue = ctx, queue
	for _, rd := range s.readers {
		s.startReader(rd)
	}
	return nil
}

// claim gives a pass the lease on its ApiToken's reads. It fails while the
// reader's read of the token is in flight; the read's end then queues the
// ApiToken, so the refused pass needs no requeue of its own.
func (s *readSchedule) claim(at *tokensv1alpha1.ApiToken) (*readLease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked(at)
	switch e.holder {
	case reading:
		e.waiting = true
		return nil, false
	case scheduled:
		heap.Remove(&s.readers[e.backend].due, e.index)
	}
	e.holder = heldByPass
	return &readLease{schedule: s, entry: e, firstPass: !e.lastKnown}, true
}

// entryLocked returns the ApiToken's entry, made on first sight. A name that now
// belongs to another UID (deleted and made again) drops the old one's entry.
func (s *readSchedule) entryLocked(at *tokensv1alpha1.ApiToken) *readEntry {
	key := types.NamespacedName{Namespace: at.Namespace, Name: at.Name}
	e, ok := s.tokens[key]
	if ok && e.uid != at.UID {
		s.removeLocked(e)
		ok = false
	}
	if !ok {
		e = &readEntry{uid: at.UID, key: key, index: -1}
		s.tokens[key] = e
	}
	return e
}

// forgetName drops the entry of an ApiToken that is gone (its pass found it no
// more), and returns its UID so that the caller forgets the rest of it too.
func (s *readSchedule) forgetName(key types.NamespacedName) (types.UID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tokens[key]
	if !ok {
		return "", false
	}
	s.removeLocked(e)
	return e.uid, true
}

// removeLocked drops an entry, from its reader's heap too when it is there. An
// entry being read is dropped all the same: the read's end finds it gone.
func (s *readSchedule) removeLocked(e *readEntry) {
	if e == nil {
		return
	}
	if e.holder == scheduled {
		heap.Remove(&s.readers[e.backend].due, e.index)
	}
	if s.tokens[e.key] == e {
		delete(s.tokens, e.key)
	}
}

// size is how many ApiTokens the schedule knows (for tests and leak checks).
func (s *readSchedule) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

// nextReadOf reports when the reader reads an ApiToken next, if it is scheduled.
func (s *readSchedule) nextReadOf(uid types.UID) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.tokens { // a scan: only tests ask
		if e.uid == uid && e.holder == scheduled {
			return e.due, true
		}
	}
	return time.Time{}, false
}

// dropBackend stops the reader of a backend whose TokenBackend is gone. Its
// scheduled tokens are held by nobody: the TokenBackend's deletion queues their
// ApiTokens, whose passes stall.
func (s *readSchedule) dropBackend(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rd, ok := s.readers[name]
	if !ok {
		return
	}
	for _, e := range s.tokens {
		if e.backend == name && (e.holder == scheduled || e.holder == reading) {
			e.holder, e.index = heldByNobody, -1
		}
	}
	if rd.cancel != nil {
		rd.cancel()
	}
	delete(s.readers, name)
}

// readerCount is how many backend readers exist (for tests).
func (s *readSchedule) readerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.readers)
}

// readLease is a pass's hold on its ApiToken's reads, from claim to end.
type readLease struct {
	schedule *readSchedule
	entry    *readEntry
	gone     bool
	// firstPass: no pass of this process has reached the token's backend read
	// yet (the entry's lastKnown): its first pass, or a retry of one that
	// stopped before it (a backend not registered yet).
	firstPass bool
}

// lastRead is when this process last read the token; zero when this pass must
// read it. A token it has not met yet (it has just started, or the token was
// made by an earlier process) is given a made-up last read one resync before
// its first-read slot: the first reads of a restart are spread over one interval
// instead of all coming at once, and each still comes within that interval.
func (l *readLease) lastRead(resync time.Duration) time.Time {
	s := l.schedule
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReadLocked(l.entry, resync)
}

func (s *readSchedule) lastReadLocked(e *readEntry, resync time.Duration) time.Time {
	if !e.lastKnown {
		now := s.clock.Now()
		if s.firstReads == 0 {
			s.started = now
		}
		slot := s.started.Add(firstReadOffset(s.firstReads, resync))
		s.firstReads++
		if slot.Before(now) {
			slot = s.lateSlotLocked(now, resync)
		}
		e.last, e.lastKnown = slot.Add(-resync), true
	}
	return e.last
}

// lateSlotLocked is the first-read slot of a token met after the slot the
// spread gave it: the new leader's first passes over 10,000 tokens take
// seconds, and the tokens whose slots passed meanwhile (about a hundred per
// second of start-up) were all read at the first tick after, 40 % over the
// steady rate for that second. They are spread instead over what is left of
// the spread, a second sequence of their own; a token met after the spread
// ended is read now.
func (s *readSchedule) lateSlotLocked(now time.Time, resync time.Duration) time.Time {
	left := s.started.Add(time.Duration(firstReadSpread * float64(resync))).Sub(now)
	if left <= 0 {
		return now
	}
	frac := goldenFraction(s.lateReads)
	s.lateReads++
	return now.Add(time.Duration(frac * float64(left)))
}

// read records that the pass has just read the token whole (or made it).
func (l *readLease) read() { l.setLast(l.schedule.clock.Now()) }

// readAtNextPass makes the next pass read the token, whatever its time.
func (l *readLease) readAtNextPass() { l.setLast(time.Time{}) }

func (l *readLease) setLast(t time.Time) {
	l.schedule.mu.Lock()
	defer l.schedule.mu.Unlock()
	l.entry.last, l.entry.lastKnown = t, true
}

// specConfirmed reports whether the token was seen to match a spec with this
// digest at the end of the last pass that ended Ready.
func (l *readLease) specConfirmed(digest specSum) bool {
	l.schedule.mu.Lock()
	defer l.schedule.mu.Unlock()
	return l.entry.spec != (specSum{}) && l.entry.spec == digest
}

// forget drops the ApiToken: it is gone (its finalizer released). The lease's
// end then does nothing.
func (l *readLease) forget() {
	l.schedule.mu.Lock()
	defer l.schedule.mu.Unlock()
	l.schedule.removeLocked(l.entry)
	l.gone = true
}

// end closes the lease. A pass that ended Ready (with its status saved) records
// the digest of the spec the token matches, and hands the token to its backend's reader, which reads it one resync after its last
// read (at once when a read was asked for); any other end leaves the token to
// the pass's own requeues.
func (l *readLease) end(at *tokensv1alpha1.ApiToken, resync time.Duration, ready bool, spec specSum) {
	s := l.schedule
	s.mu.Lock()
	defer s.mu.Unlock()
	e := l.entry
	if l.gone || s.tokens[e.key] != e {
		return
	}
	e.holder, e.waiting = heldByNobody, false
	if !ready {
		e.spec = specSum{}
		return
	}
	e.spec = spec
	e.backend, e.sid, e.etag = backendName(at), at.Status.AccountSID, at.Status.BackendETag
	e.due = s.clock.Now()
	if last := s.lastReadLocked(e, resync); !last.IsZero() {
		e.due = last.Add(resync)
	}
	s.pushLocked(e)
}

// pushLocked schedules an entry with its backend's reader.
func (s *readSchedule) pushLocked(e *readEntry) {
	rd := s.readerLocked(e.backend)
	e.holder = scheduled
	heap.Push(&rd.due, e)
	if rd.due[0] != e {
		return
	}
	select { // e is now the earliest: the reader may be sleeping until a later one
	case rd.wake <- struct{}{}:
	default:
	}
}

// readerLocked returns the reader of a backend, started when the schedule is.
func (s *readSchedule) readerLocked(name string) *backendReader {
	rd, ok := s.readers[name]
	if !ok {
		rd = &backendReader{name: name, wake: make(chan struct{}, 1), slots: make(chan struct{}, s.inFlight)}
		s.readers[name] = rd
		if s.ctx != nil {
			s.startReader(rd)
		}
	}
	return rd
}

func (s *readSchedule) startReader(rd *backendReader) {
	ctx, cancel := context.WithCancel(s.ctx)
	rd.cancel = cancel
	go s.run(ctx, rd)
}

// pendingRead is what one read needs, copied out under the lock; entry is
// only compared, under the lock, when the read ends.
type pendingRead struct {
	entry     *readEntry
	sid, etag string
}

// run reads the backend's tokens as they fall due, at most inFlight at once,
// waking once a tick (checkTick) for all that fell due since.
func (s *readSchedule) run(ctx context.Context, rd *backendReader) {
	timer := s.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case rd.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		next, wait := s.nextDue(rd)
		if next != nil {
			go s.read(ctx, rd, *next)
			continue
		}
		<-rd.slots
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(untilTick(s.clock.Now(), wait, checkTick(s.backends.resyncOf(rd.name))))
		select {
		case <-timer.C():
		case <-rd.wake:
		case <-ctx.Done():
			return
		}
	}
}

// nextDue takes the backend's earliest token out of its heap when it is due;
// otherwise it says how long until it is (an hour when there is none).
func (s *readSchedule) nextDue(rd *backendReader) (*pendingRead, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(rd.due) == 0 {
		return nil, time.Hour
	}
	e := rd.due[0]
	if wait := e.due.Sub(s.clock.Now()); wait > 0 {
		return nil, wait
	}
	heap.Pop(&rd.due)
	e.holder = reading
	return &pendingRead{entry: e, sid: e.sid, etag: e.etag}, 0
}

// read sends one conditional read and records its answer.
func (s *readSchedule) read(ctx context.Context, rd *backendReader, pr pendingRead) {
	defer func() { <-rd.slots }()
	unchanged := false
	be, resync, state := s.backends.get(rd.name)
	if state == backendReady {
		_, modified, err := be.Get(ctx, pr.sid, pr.etag)
		unchanged = err == nil && !modified
	}
	s.finishRead(pr.entry, unchanged, resync)
}

// finishRead ends a reader's read. A 304 schedules the next read a resync
// later, unless a pass was refused meanwhile; anything else asks the next pass
// to read the token in full. Either way a pass that must run is queued.
func (s *readSchedule) finishRead(e *readEntry, unchanged bool, resync time.Duration) {
	s.mu.Lock()
	if s.tokens[e.key] != e || e.holder != reading {
		s.mu.Unlock()
		return // the ApiToken is gone, or its backend was dropped
	}
	now := s.clock.Now()
	if unchanged {
		e.last = now
	} else {
		e.last = time.Time{}
	}
	if unchanged && !e.waiting {
		e.due = now.Add(resync)
		s.pushLocked(e)
		s.mu.Unlock()
		return
	}
	e.holder, e.waiting = heldByNobody, false
	key, queue := e.key, s.queue
	s.mu.Unlock()
	queue.Add(reconcile.Request{NamespacedName: key})
}

// checkTick is how far apart a backend's reader wakes: it reads together every
// token that fell due since it last woke. On an idle machine, waking a process
// costs more than the read it wakes for: at 10,000 tokens and the default
// resync, one wake a second for 17 reads costs a tenth of what 17 wakes do.
// A tick is a 600th of the resync interval, at most a second: each holds about
// tokens / 600 reads whatever the interval, so that reading a tick late or early
// moves the reads of any 10 seconds by that many (under 2 % of them from a
// 1-minute interval down), and a token is never read before it is due and at
// most one tick after, well within the 5 % of the interval that the first reads
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

// readHeap orders scheduled tokens by due time.
type readHeap []*readEntry

func (h readHeap) Len() int           { return len(h) }
func (h readHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h readHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *readHeap) Push(x any) {
	e := x.(*readEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *readHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
