package controllers

import (
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// Registry holds a client for each ready TokenBackend. The TokenBackend controller
// fills it; the ApiToken controller reads it. When a backend's client is replaced
// (its URL, key, CA or limits changed) or it becomes ready, the registry emits an
// event so that the ApiTokens using it are reconciled again.
type Registry struct {
	mu      sync.RWMutex
	entries map[string]registryEntry
	changed chan event.TypedGenericEvent[*tokensv1alpha1.TokenBackend]
	// recheck asks the TokenBackend controller to probe a backend reported down.
	recheck chan event.TypedGenericEvent[*tokensv1alpha1.TokenBackend]
	// removed are told the name of each backend the registry forgets (the read
	// schedule stops its reader).
	removed []func(name string)
}

type registryEntry struct {
	configHash string
	client     backend.Backend
	resync     time.Duration
	catalogAt  time.Time
	// down is set when an ApiToken found the backend unreachable: ApiTokens wait
	// (without calling it) until the TokenBackend controller has seen it answer.
	down bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		entries: map[string]registryEntry{},
		changed: make(chan event.TypedGenericEvent[*tokensv1alpha1.TokenBackend], 1024),
		recheck: make(chan event.TypedGenericEvent[*tokensv1alpha1.TokenBackend], 1024),
	}
}

// backendState is what the registry knows of a backend.
type backendState int

const (
	backendMissing backendState = iota // not (yet) registered by this process
	backendDown                        // registered, but found unreachable
	backendReady
)

// get returns the client of a backend, its resync interval and its state.
func (r *Registry) get(name string) (backend.Backend, time.Duration, backendState) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[name]
	switch {
	case !ok:
		return nil, 0, backendMissing
	case e.down:
		return nil, 0, backendDown
	}
	return e.client, e.resync, backendReady
}

// markDown records that a call to the backend failed for want of a backend. The
// first report asks the TokenBackend controller to probe it; ApiTokens then wait
// for its recovery instead of each retrying on their own.
func (r *Registry) markDown(name string) {
	r.mu.Lock()
	e, ok := r.entries[name]
	first := ok && !e.down
	if first {
		e.down = true
		r.entries[name] = e
	}
	r.mu.Unlock()
	if first {
		select {
		case r.recheck <- event.TypedGenericEvent[*tokensv1alpha1.TokenBackend]{Object: &tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{Name: name}}}:
		default:
		}
	}
}

// resyncOf is a backend's resync interval, down or not; the default when it is
// not registered.
func (r *Registry) resyncOf(name string) time.Duration {
	if e, ok := r.entry(name); ok && e.resync > 0 {
		return e.resync
	}
	return DefaultResyncInterval
}

// onRemove registers f to be told each backend the registry forgets. Call it
// before the controllers start.
func (r *Registry) onRemove(f func(name string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, f)
}

func (r *Registry) entry(name string) (registryEntry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[name]
	return e, ok
}

// keepDown marks a registered backend down without asking for a probe: the
// TokenBackend controller is the one probing.
func (r *Registry) keepDown(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[name]; ok {
		e.down = true
		r.entries[name] = e
	}
}

// set stores a ready backend and tells its ApiTokens when it is new or replaced.
func (r *Registry) set(tb *tokensv1alpha1.TokenBackend, e registryEntry) {
	r.mu.Lock()
	old, existed := r.entries[tb.Name]
	r.entries[tb.Name] = e
	r.mu.Unlock()
	if !existed || old.configHash != e.configHash || old.down != e.down {
		r.notify(tb)
	}
}

// remove forgets a backend that is gone or no longer usable.
func (r *Registry) remove(tb *tokensv1alpha1.TokenBackend) {
	r.mu.Lock()
	_, existed := r.entries[tb.Name]
	delete(r.entries, tb.Name)
	removed := r.removed
	r.mu.Unlock()
	if existed {
		for _, f := range removed {
			f(tb.Name)
		}
		r.notify(tb)
	}
}

func (r *Registry) notify(tb *tokensv1alpha1.TokenBackend) {
	select {
	case r.changed <- event.TypedGenericEvent[*tokensv1alpha1.TokenBackend]{Object: tb.DeepCopy()}:
	default: // the ApiToken controller is behind; its resync will catch up
	}
}
