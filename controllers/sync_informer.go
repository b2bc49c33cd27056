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
// the watch. The operator's handlers are neither: controller-runtime's only
// filter an event (predicates) and put a key on a work queue. While tokens
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
// and sees none twice. Handlers must return promptly and must not add or
// remove handlers of the same informer (they would wait on the lock they
// run under): controller-runtime's do neither.

// syncInformer is a toolscache.SharedIndexInformer whose handlers run on the
// reflector's goroutine.
type syncInformer struct {
	lw           toolscache.ListerWatcher
	objectType   runtime.Object
	resyncPeriod time.Duration
	indexer      toolscache.Indexer

	// mu orders the changes to the indexer and their delivery to the handlers,
	// and guards handlers, transform, watchErrorHandler and the run state.
	mu                sync.Mutex
	handlers          []*syncHandler
	transform         toolscache.TransformFunc
	watchErrorHandler toolscache.WatchErrorHandlerWithContext
	started, stopped  bool

	synced    chan struct{} // closed after the first list is delivered
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
	handler  toolscache.ResourceEventHandler
	resync   bool // resyncs deliver it OnUpdate(obj, obj)
	informer *syncInformer
}

// HasSynced is true once the informer has synced: a handler is given the
// cached objects as it is added, and the first list as it is delivered.
func (h *syncHandler) HasSynced() bool { return h.informer.HasSynced() }

func (h *syncHandler) HasSyncedChecker() toolscache.DoneChecker { return h.informer.HasSyncedChecker() }

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
	if s.stopped {
		return nil, fmt.Errorf("handler %v was not added to the informer: it has stopped", handler)
	}
	resync := s.resyncPeriod
	if options.ResyncPeriod != nil {
		resync = *options.ResyncPeriod
	}
	h := &syncHandler{handler: handler, resync: resync > 0, informer: s}
	for _, obj := range s.indexer.List() {
		handler.OnAdd(obj, true)
	}
	s.handlers = append(s.handlers, h)
	return h, nil
}

func (s *syncInformer) RemoveEventHandler(handle toolscache.ResourceEventHandlerRegistration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range s.handlers {
		if h == handle {
			s.handlers = append(s.handlers[:i:i], s.handlers[i+1:]...)
			return nil
		}
	}
	return nil // removing twice, or a handle of another informer, is a no-op as in client-go
}

func (s *syncInformer) GetStore() toolscache.Store           { return s.indexer }
func (s *syncInformer) GetIndexer() toolscache.Indexer       { return s.indexer }
func (s *syncInformer) GetController() toolscache.Controller { return nil } // deprecated in client-go, unused

func (s *syncInformer) AddIndexers(indexers toolscache.Indexers) error {
	return s.indexer.AddIndexers(indexers)
}

func (s *syncInformer) HasSynced() bool {
	select {
	case <-s.synced:
		return true
	default:
		return false
	}
}

func (s *syncInformer) HasSyncedChecker() toolscache.DoneChecker { return syncedChecker{s} }

// syncedChecker is the informer's HasSyncedChecker.
type syncedChecker struct{ s *syncInformer }

func (c syncedChecker) Name() string { return fmt.Sprintf("%T informer", c.s.objectType) }

func (c syncedChecker) Done() <-chan struct{} { return c.s.synced }

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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errInformerStarted
	}
	s.watchErrorHandler = handler
	return nil
}

func (s *syncInformer) SetTransform(transform toolscache.TransformFunc) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errInformerStarted
	}
	s.transform = transform
	return nil
}

var errInformerStarted = errors.New("the informer has already started")

func (s *syncInformer) IsStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	s.mu.Lock()
	if s.started || s.stopped {
		s.mu.Unlock()
		return
	}
	s.started = true
	onError := s.watchErrorHandler
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
	}()
	if onError == nil {
		onError = toolscache.DefaultWatchErrorHandler
	}
	r := toolscache.NewReflectorWithOptions(s.lw, s.objectType, syncInformerStore{s}, toolscache.ReflectorOptions{
		ResyncPeriod:    s.resyncPeriod,
		TypeDescription: fmt.Sprintf("%T", s.objectType),
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
		old, exists, err := s.indexer.GetByKey(key)
		if err != nil {
			return err
		}
		if !exists {
			old = nil
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
	}
	if initial {
		close(s.synced)
	}
	return nil
}

// Resync gives the handlers that asked for resyncs every cached object as an
// update to itself.
func (st syncInformerStore) Resync() error {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	objects := s.indexer.List()
	for _, h := range s.handlers {
		if h.resync {
			for _, obj := range objects {
				h.handler.OnUpdate(obj, obj)
			}
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

// transformed is obj through the informer's transform, set before it started.
func (s *syncInformer) transformed(obj any) (any, error) {
	if s.transform == nil {
		return obj, nil
	}
	return s.transform(obj)
}
