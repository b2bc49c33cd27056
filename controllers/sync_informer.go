package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilwait "k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// client-go's shared informer hands every watch event on four times before a
// handler sees it: from the watch's decoding goroutine to the reflector's, into
// a FIFO that another goroutine pops (to update the cache and fan the event
// out), into each handler's buffer, which two more goroutines pass on. That
// decouples handlers that are slow, or that call back into the informer, from
// the watch. The operator's handlers are neither (below): controller-runtime's
// filter an event (predicates) and put keys on a work queue. While tokens
// converge, every new token brings four events (the ApiToken created, its
// finalizer, its status; its Secret), and each hand-off to a goroutine that
// sleeps costs a wake-up: with the FIFO and the buffers, the operator spent
// more CPU per token than a client that makes the same writes without watching.
//
// syncInformer is the same contract without the hand-offs: client-go's own
// Reflector lists and watches into a store (syncInformerStore) that updates the
// indexer and calls the handlers on the reflector's goroutine, in the order
// client-go's would: an object already cached is an update, one that is not an
// add; a relist (Replace) updates the cache first, then delivers the
// deletions (as DeletedFinalStateUnknown), then the adds and updates. A handler
// added to a running informer is first given every cached object as added in
// the initial list, under the same lock as the events, so that it misses none
// and sees none twice. As in client-go, the informer has synced once its first
// list is in the indexer (cache reads wait for that), and each handler once it
// has been given that list.
//
// What a handler does, the watch waits for. controller-runtime's handlers
// filter an event (predicates) and put keys on a work queue; the operator's
// handlers of TokenBackend and Namespace events also list the ApiTokens
// concerned from the cache (requestsFor), which waits for the ApiToken
// informer's first list: that holds up the TokenBackend or Namespace watch,
// not the ApiToken one. A handler must not add or remove handlers of its own
// informer (they would wait on the lock it runs under).

// syncInformer is a toolscache.SharedIndexInformer whose handlers run on the
// reflector's goroutine.
type syncInformer struct {
	lw           toolscache.ListerWatcher
	objectType   runtime.Object
	resyncPeriod time.Duration
	indexer      toolscache.Indexer

	// mu orders the changes to the indexer and their delivery to the handlers,
	// and guards handlers.
	mu       sync.Mutex
	handlers []*syncHandler

	// runMu guards the run state and what must be set before the start.
	runMu             sync.Mutex
	transform         toolscache.TransformFunc
	watchErrorHandler toolscache.WatchErrorHandlerWithContext
	started, stopped  bool

	synced    chan struct{} // closed once the first list is in the indexer
	reflector atomic.Pointer[toolscache.Reflector]
}

// newSyncInformer is the cache's informer constructor (cache.Options.NewInformer).
func newSyncInformer(lw toolscache.ListerWatcher, objectType runtime.Object, resyncPeriod time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	return &syncInformer{
		lw:           lw,
		objectType:   objectType,
		resyncPeriod: resyncPeriod,
		indexer:      toolscache.NewIndexer(toolscache.DeletionHandlingMetaNamespaceKeyFunc, indexers),
		synced:       make(chan struct{}),
	}
}

// syncHandler is a registered handler: its registration handle.
type syncHandler struct {
	handler toolscache.ResourceEventHandler
	resync  bool // resyncs deliver it OnUpdate(obj, obj)
	name    string
	// synced is closed once the handler has been given the first list: as it
	// is added to a synced informer, or as the first list is delivered.
	synced chan struct{}
}

func (h *syncHandler) HasSynced() bool { return isClosed(h.synced) }

func (h *syncHandler) HasSyncedChecker() toolscache.DoneChecker {
	return doneChecker{name: h.name + " handler", done: h.synced}
}

// markSynced closes synced once (under the informer's mu).
func (h *syncHandler) markSynced() {
	if !isClosed(h.synced) {
		close(h.synced)
	}
}

// doneChecker is a toolscache.DoneChecker over a channel.
type doneChecker struct {
	name string
	done chan struct{}
}

func (c doneChecker) Name() string { return c.name }

func (c doneChecker) Done() <-chan struct{} { return c.done }

func isClosed(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (s *syncInformer) AddEventHandler(handler toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	return s.AddEventHandlerWithOptions(handler, toolscache.HandlerOptions{})
}

func (s *syncInformer) AddEventHandlerWithResyncPeriod(handler toolscache.ResourceEventHandler, resyncPeriod time.Duration) (toolscache.ResourceEventHandlerRegistration, error) {
	return s.AddEventHandlerWithOptions(handler, toolscache.HandlerOptions{ResyncPeriod: &resyncPeriod})
}

// AddEventHandlerWithOptions adds handler, first giving it every cached object
// as an add in the initial list. A handler that asks for resyncs gets them at
// the informer's period (client-go rounds a handler's period to its own too).
func (s *syncInformer) AddEventHandlerWithOptions(handler toolscache.ResourceEventHandler, options toolscache.HandlerOptions) (toolscache.ResourceEventHandlerRegistration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.IsStopped() {
		return nil, fmt.Errorf("handler %v was not added to the %s: it has stopped", handler, s.name())
	}
	resync := s.resyncPeriod
	if options.ResyncPeriod != nil {
		resync = *options.ResyncPeriod
	}
	h := &syncHandler{handler: handler, resync: resync > 0, name: s.name(), synced: make(chan struct{})}
	for _, obj := range s.indexer.List() {
		handler.OnAdd(obj, true)
	}
	if s.HasSynced() {
		h.markSynced()
	}
	s.handlers = append(s.handlers, h)
	return h, nil
}

func (s *syncInformer) RemoveEventHandler(handle toolscache.ResourceEventHandlerRegistration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := handle.(*syncHandler)
	if !ok {
		return fmt.Errorf("%T is not a registration of the %s", handle, s.name())
	}
	for i := range s.handlers {
		if s.handlers[i] == h {
			s.handlers = append(s.handlers[:i:i], s.handlers[i+1:]...)
			break
		}
	}
	return nil // removing twice is a no-op, as in client-go
}

func (s *syncInformer) GetStore() toolscache.Store     { return s.indexer }
func (s *syncInformer) GetIndexer() toolscache.Indexer { return s.indexer }

// GetController is deprecated in client-go, whose informer returns a
// controller that does nothing but report its informer's sync; so does this.
func (s *syncInformer) GetController() toolscache.Controller { return syncController{s} }

// syncController is GetController's answer.
type syncController struct{ s *syncInformer }

func (c syncController) Run(<-chan struct{})                      {}
func (c syncController) RunWithContext(context.Context)           {}
func (c syncController) HasSynced() bool                          { return c.s.HasSynced() }
func (c syncController) HasSyncedChecker() toolscache.DoneChecker { return c.s.HasSyncedChecker() }
func (c syncController) LastSyncResourceVersion() string          { return c.s.LastSyncResourceVersion() }

func (s *syncInformer) AddIndexers(indexers toolscache.Indexers) error {
	return s.indexer.AddIndexers(indexers)
}

func (s *syncInformer) HasSynced() bool { return isClosed(s.synced) }

func (s *syncInformer) HasSyncedChecker() toolscache.DoneChecker {
	return doneChecker{name: s.name(), done: s.synced}
}

// name names the informer by the kind it watches (controller-runtime sets
// the kind on the object types it gives), else by the Go type.
func (s *syncInformer) name() string {
	if gvk := s.objectType.GetObjectKind().GroupVersionKind(); !gvk.Empty() {
		return gvk.Kind + " informer"
	}
	return fmt.Sprintf("%T informer", s.objectType)
}

func (s *syncInformer) LastSyncResourceVersion() string {
	if r := s.reflector.Load(); r != nil {
		return r.LastSyncResourceVersion()
	}
	return ""
}

func (s *syncInformer) SetWatchErrorHandler(handler toolscache.WatchErrorHandler) error {
	return s.SetWatchErrorHandlerWithContext(func(_ context.Context, r *toolscache.Reflector, err error) { handler(r, err) })
}

func (s *syncInformer) SetWatchErrorHandlerWithContext(handler toolscache.WatchErrorHandlerWithContext) error {
	return s.beforeStart(func() { s.watchErrorHandler = handler })
}

func (s *syncInformer) SetTransform(transform toolscache.TransformFunc) error {
	return s.beforeStart(func() { s.transform = transform })
}

// beforeStart runs set, a setting that must not change once the informer
// runs, or refuses it after the start.
func (s *syncInformer) beforeStart(set func()) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.started {
		return errInformerStarted
	}
	set()
	return nil
}

var errInformerStarted = errors.New("the informer has already started")

func (s *syncInformer) IsStopped() bool {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	return s.stopped
}

func (s *syncInformer) Run(stopCh <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.RunWithContext(ctx)
}

// RunWithContext lists and watches until ctx ends, as client-go's reflector
// runs: after an error, the watch error handler, then a retry with backoff
// (client-go's figures: 800 ms doubling to 30 s, reset after 2 minutes of
// success; Steps as client-go computes them, 30 s / 800 ms rounded up).
func (s *syncInformer) RunWithContext(ctx context.Context) {
	s.runMu.Lock()
	if s.started || s.stopped {
		s.runMu.Unlock()
		return
	}
	s.started = true
	onError := s.watchErrorHandler
	s.runMu.Unlock()
	defer func() {
		s.runMu.Lock()
		s.stopped = true
		s.runMu.Unlock()
	}()
	if onError == nil {
		onError = toolscache.DefaultWatchErrorHandler
	}
	r := toolscache.NewReflectorWithOptions(s.lw, s.objectType, syncInformerStore{s}, toolscache.ReflectorOptions{
		Name:         s.name(),
		ResyncPeriod: s.resyncPeriod,
	})
	s.reflector.Store(r)
	backoff := utilwait.Backoff{Duration: 800 * time.Millisecond, Cap: 30 * time.Second, Steps: 38, Factor: 2.0, Jitter: 1.0}
	_ = backoff.DelayWithReset(clock.RealClock{}, 2*time.Minute).Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		if err := r.ListAndWatchWithContext(ctx); err != nil {
			onError(ctx, r, err)
		}
		return false, nil
	})
}

// syncInformerStore is the reflector's store: each change goes to the indexer,
// then to every handler, on the reflector's goroutine.
type syncInformerStore struct{ s *syncInformer }

// Transformer makes the reflector transform a streamed list as it arrives
// (toolscache.TransformingStore), as client-go's FIFO does, rather than hold
// the objects whole until Replace; Replace transforms them again, as
// client-go's does, so the cache's transforms are idempotent.
func (st syncInformerStore) Transformer() toolscache.TransformFunc { return st.s.transform }

func (st syncInformerStore) Add(obj any) error    { return st.s.upsert(obj) }
func (st syncInformerStore) Update(obj any) error { return st.s.upsert(obj) }

func (st syncInformerStore) Delete(obj any) error {
	s := st.s
	obj, err := s.transformed(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.indexer.Delete(obj); err != nil {
		return err
	}
	for _, h := range s.handlers {
		h.handler.OnDelete(obj)
	}
	return nil
}

// Replace makes the cache the list (a relist, or the first list): the
// objects cached but not listed are deleted as DeletedFinalStateUnknown, the
// others added or updated. The first list's adds are in the initial list.
func (st syncInformerStore) Replace(list []any, resourceVersion string) error {
	s := st.s
	for i := range list {
		obj, err := s.transformed(list[i])
		if err != nil {
			return err
		}
		list[i] = obj
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	listed := make(map[string]struct{}, len(list))
	type change struct{ old, new any }
	changes := make([]change, 0, len(list))
	for _, obj := range list {
		key, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			return err
		}
		listed[key] = struct{}{}
		old, _, err := s.indexer.GetByKey(key) // nil when not cached
		if err != nil {
			return err
		}
		changes = append(changes, change{old: old, new: obj})
	}
	var deletions []toolscache.DeletedFinalStateUnknown
	for _, key := range s.indexer.ListKeys() {
		if _, ok := listed[key]; ok {
			continue
		}
		if old, exists, err := s.indexer.GetByKey(key); err == nil && exists {
			deletions = append(deletions, toolscache.DeletedFinalStateUnknown{Key: key, Obj: old})
		}
	}
	if err := s.indexer.Replace(list, resourceVersion); err != nil {
		return err
	}
	initial := !s.HasSynced()
	if initial {
		close(s.synced) // the cache holds the list: reads need not wait for the handlers
	}
	for _, h := range s.handlers {
		for _, d := range deletions {
			h.handler.OnDelete(d)
		}
		for _, c := range changes {
			if c.old != nil {
				h.handler.OnUpdate(c.old, c.new)
			} else {
				h.handler.OnAdd(c.new, initial)
			}
		}
		h.markSynced()
	}
	return nil
}

// Resync gives the handlers that asked for resyncs every cached object as an
// update to itself.
func (st syncInformerStore) Resync() error {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var objects []any
	for _, h := range s.handlers {
		if !h.resync {
			continue
		}
		if objects == nil {
			objects = s.indexer.List()
		}
		for _, obj := range objects {
			h.handler.OnUpdate(obj, obj)
		}
	}
	return nil
}

// upsert caches obj and delivers it: an update of the cached object, or an
// add outside the initial list.
func (s *syncInformer) upsert(obj any) error {
	obj, err := s.transformed(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists, err := s.indexer.Get(obj)
	if err != nil {
		return err
	}
	if exists {
		if err := s.indexer.Update(obj); err != nil {
			return err
		}
		for _, h := range s.handlers {
			h.handler.OnUpdate(old, obj)
		}
		return nil
	}
	if err := s.indexer.Add(obj); err != nil {
		return err
	}
	for _, h := range s.handlers {
		h.handler.OnAdd(obj, false)
	}
	return nil
}

// transformed is obj through the informer's transform, set before it started
// (RunWithContext reads the run state under runMu before the reflector starts).
func (s *syncInformer) transformed(obj any) (any, error) {
	if s.transform == nil {
		return obj, nil
	}
	return s.transform(obj)
}
