package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// The syncInformer runs under every informer of the operator's cache, so the
// envtest suites exercise it against a real API server. These tests hold what
// a real server does not show on demand: a relist that drops an object, a
// handler added to a running informer, the order of deliveries. The lists and
// watches are client-go's fake watcher, fed by the test.

// recordingHandler records the deliveries it gets, one line each.
type recordingHandler struct {
	mu     sync.Mutex
	events []string
}

func (h *recordingHandler) record(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, fmt.Sprintf(format, args...))
}

func (h *recordingHandler) OnAdd(obj any, initial bool) {
	h.record("add %s initial=%t", describe(obj), initial)
}

func (h *recordingHandler) OnUpdate(old, obj any) {
	h.record("update %s from %s", describe(obj), old.(*tokensv1alpha1.ApiToken).ResourceVersion)
}

func (h *recordingHandler) OnDelete(obj any) {
	if unknown, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		h.record("delete-unknown %s", describe(unknown.Obj))
		return
	}
	h.record("delete %s", describe(obj))
}

func (h *recordingHandler) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// waitFor waits until the handler has recorded want, in that order. The
// deliveries of one list come in no set order (a streamed list is gathered in
// a map before it is delivered): an entry "x | y" is a group of deliveries in
// any order.
func (h *recordingHandler) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !matchesInGroups(h.seen(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries:\n got %q\nwant %q", h.seen(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// matchesInGroups reports whether seen is want's groups, each in any order.
func matchesInGroups(seen, want []string) bool {
	for _, group := range want {
		members := strings.Split(group, " | ")
		if len(seen) < len(members) {
			return false
		}
		got := slices.Sorted(slices.Values(seen[:len(members)]))
		if !slices.Equal(got, slices.Sorted(slices.Values(members))) {
			return false
		}
		seen = seen[len(members):]
	}
	return len(seen) == 0
}

func describe(obj any) string {
	at := obj.(*tokensv1alpha1.ApiToken)
	return fmt.Sprintf("%s@%s %s", at.Name, at.ResourceVersion, at.Spec.Description)
}

func informerToken(name, rv string) *tokensv1alpha1.ApiToken {
	return &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: rv}}
}

// fakeServer answers the informer's lists from lists, one per list call (the
// last one again after them), and its watches with fake watchers the test
// drives through watches.
type fakeServer struct {
	mu      sync.Mutex
	lists   []*tokensv1alpha1.ApiTokenList
	watches chan *watch.FakeWatcher
}

func newFakeServer(lists ...*tokensv1alpha1.ApiTokenList) *fakeServer {
	return &fakeServer{lists: lists, watches: make(chan *watch.FakeWatcher, 10)}
}

func (f *fakeServer) listWatch() *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.next(), nil
		},
		WatchFuncWithContext: func(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w := watch.NewFakeWithChanSize(100, false)
			if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
				// A streaming list (client-go's default where the server has it):
				// the list as added events, then the bookmark that ends it.
				f.mu.Lock()
				list := f.next()
				f.mu.Unlock()
				for i := range list.Items {
					w.Add(&list.Items[i])
				}
				end := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{ResourceVersion: list.ResourceVersion,
					Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
				w.Action(watch.Bookmark, end)
			}
			f.watches <- w
			return w, nil
		},
	}
}

// next is the answer to the next list.
func (f *fakeServer) next() *tokensv1alpha1.ApiTokenList {
	list := f.lists[0]
	if len(f.lists) > 1 {
		f.lists = f.lists[1:]
	}
	return list.DeepCopy()
}

// nextWatch is the informer's next watch.
func (f *fakeServer) nextWatch(t *testing.T) *watch.FakeWatcher {
	t.Helper()
	select {
	case w := <-f.watches:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the informer opened no watch")
		return nil
	}
}

func tokenList(rv string, items ...*tokensv1alpha1.ApiToken) *tokensv1alpha1.ApiTokenList {
	list := &tokensv1alpha1.ApiTokenList{ListMeta: metav1.ListMeta{ResourceVersion: rv}}
	for _, at := range items {
		list.Items = append(list.Items, *at)
	}
	return list
}

// startInformer runs a syncInformer over server with a transform that marks
// what it stored, and returns it with the handler added before it started.
func startInformer(t *testing.T, server *fakeServer) (*syncInformer, *recordingHandler) {
	t.Helper()
	informer := newSyncInformer(server.listWatch(), &tokensv1alpha1.ApiToken{}, 0, toolscache.Indexers{}).(*syncInformer)
	mustNot(t, informer.SetTransform(func(obj any) (any, error) {
		if at, ok := obj.(*tokensv1alpha1.ApiToken); ok {
			at.Spec.Description = "transformed"
		}
		return obj, nil
	}))
	early := &recordingHandler{}
	if _, err := informer.AddEventHandler(early); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { informer.RunWithContext(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return informer, early
}

func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSyncInformerDeliversEventsInOrderAsClientGoDoes(t *testing.T) {
	server := newFakeServer(tokenList("10", informerToken("a", "1"), informerToken("b", "2")))
	informer, early := startInformer(t, server)
	w := server.nextWatch(t)
	early.waitFor(t, "add a@1 transformed initial=true | add b@2 transformed initial=true")
	waitDone(t, informer.HasSyncedChecker())

	w.Add(informerToken("c", "11"))
	w.Modify(informerToken("a", "12"))
	w.Add(informerToken("b", "13")) // an add of a cached object is an update
	w.Delete(informerToken("c", "14"))
	early.waitFor(t, "add a@1 transformed initial=true | add b@2 transformed initial=true",
		"add c@11 transformed initial=false", "update a@12 transformed from 1", "update b@13 transformed from 2", "delete c@14 transformed")

	keys := informer.GetStore().ListKeys()
	slices.Sort(keys)
	if want := []string{"ns/a", "ns/b"}; !slices.Equal(keys, want) {
		t.Errorf("cached keys %q, want %q", keys, want)
	}
	if obj, _, _ := informer.GetIndexer().GetByKey("ns/a"); obj.(*tokensv1alpha1.ApiToken).ResourceVersion != "12" {
		t.Errorf("cached ns/a at %s, want the update's 12", obj.(*tokensv1alpha1.ApiToken).ResourceVersion)
	}
}

func TestSyncInformerGivesALateHandlerTheCacheFirst(t *testing.T) {
	server := newFakeServer(tokenList("10", informerToken("a", "1")))
	informer, early := startInformer(t, server)
	w := server.nextWatch(t)
	early.waitFor(t, "add a@1 transformed initial=true")

	late := &recordingHandler{}
	registration, err := informer.AddEventHandler(late)
	mustNot(t, err)
	// Given the cache as it is added, before the call returns: synced at once.
	if got := late.seen(); !slices.Equal(got, []string{"add a@1 transformed initial=true"}) {
		t.Fatalf("a handler added to a synced informer got %q before AddEventHandler returned", got)
	}
	if !registration.HasSynced() {
		t.Error("the late handler's registration has not synced")
	}
	w.Add(informerToken("b", "11"))
	late.waitFor(t, "add a@1 transformed initial=true", "add b@11 transformed initial=false")

	mustNot(t, informer.RemoveEventHandler(registration))
	w.Modify(informerToken("b", "12"))
	// Each event goes to the handlers in the order they were added: once the
	// early one has the next event, the late one would have had this one.
	w.Add(informerToken("c", "13"))
	early.waitFor(t, "add a@1 transformed initial=true", "add b@11 transformed initial=false",
		"update b@12 transformed from 11", "add c@13 transformed initial=false")
	if got := late.seen(); len(got) != 2 {
		t.Errorf("a removed handler got %q", got[2:])
	}
	// A registration of another informer is an error, as in client-go.
	type otherRegistration struct {
		toolscache.ResourceEventHandlerRegistration
	}
	if err := informer.RemoveEventHandler(otherRegistration{}); err == nil {
		t.Error("RemoveEventHandler of a registration it did not return did not fail")
	}
}

// A handler added before the first list has synced once it has been given the
// list, not when the cache holds it: controller-runtime's sources wait on the
// handler's registration before their controller starts its workers.
func TestSyncInformerHandlerSyncsAfterItsInitialList(t *testing.T) {
	server := newFakeServer(tokenList("10", informerToken("a", "1")))
	informer := newSyncInformer(server.listWatch(), &tokensv1alpha1.ApiToken{}, 0, toolscache.Indexers{})
	release := make(chan struct{})
	inInitialAdd := make(chan struct{})
	registration, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(any) {
		close(inInitialAdd)
		<-release
	}})
	mustNot(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { informer.RunWithContext(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	<-inInitialAdd
	// The cache holds the list, so reads need not wait; the handler has not
	// had all of it yet.
	waitDone(t, informer.HasSyncedChecker())
	if registration.HasSynced() {
		t.Error("the handler's registration synced while its initial add was running")
	}
	close(release)
	waitDone(t, registration.HasSyncedChecker())
}

// waitDone waits for a DoneChecker, at most 10 s.
func waitDone(t *testing.T, checker toolscache.DoneChecker) {
	t.Helper()
	select {
	case <-checker.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not done after 10 s", checker.Name())
	}
}

func TestSyncInformerRelistDeletesWhatIsGoneAndUpdatesTheRest(t *testing.T) {
	server := newFakeServer(
		tokenList("10", informerToken("a", "1"), informerToken("b", "2")),
		// After the watch expires: a is gone, b changed, c is new.
		tokenList("20", informerToken("b", "15"), informerToken("c", "16")))
	informer, early := startInformer(t, server)
	w := server.nextWatch(t)
	early.waitFor(t, "add a@1 transformed initial=true | add b@2 transformed initial=true")

	// 410 Gone: the reflector lists again.
	w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	server.nextWatch(t)
	early.waitFor(t, "add a@1 transformed initial=true | add b@2 transformed initial=true",
		"delete-unknown a@1 transformed", "update b@15 transformed from 2 | add c@16 transformed initial=false")
	keys := informer.GetStore().ListKeys()
	slices.Sort(keys)
	if want := []string{"ns/b", "ns/c"}; !slices.Equal(keys, want) {
		t.Errorf("cached keys after the relist %q, want %q", keys, want)
	}
}

func TestSyncInformerRefusesChangesOnceStartedAndHandlersOnceStopped(t *testing.T) {
	server := newFakeServer(tokenList("10"))
	informer := newSyncInformer(server.listWatch(), &tokensv1alpha1.ApiToken{}, 0, toolscache.Indexers{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { informer.RunWithContext(ctx); close(done) }()
	server.nextWatch(t)
	if err := informer.SetTransform(func(obj any) (any, error) { return obj, nil }); err == nil {
		t.Error("SetTransform on a running informer did not fail")
	}
	if err := informer.SetWatchErrorHandler(func(*toolscache.Reflector, error) {}); err == nil {
		t.Error("SetWatchErrorHandler on a running informer did not fail")
	}
	if informer.IsStopped() {
		t.Error("IsStopped is true while it runs")
	}
	cancel()
	<-done
	if !informer.IsStopped() {
		t.Error("IsStopped is false after its context ended")
	}
	if _, err := informer.AddEventHandler(&recordingHandler{}); err == nil {
		t.Error("AddEventHandler on a stopped informer did not fail")
	}
}

// The watch error handler set before the start hears of a failed list.
func TestSyncInformerReportsWatchErrors(t *testing.T) {
	failed := make(chan error, 1)
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "tokens.apitoken.dev", Resource: "apitokens"}, "", fmt.Errorf("no"))
	lw := &toolscache.ListWatch{
		ListWithContextFunc:  func(context.Context, metav1.ListOptions) (runtime.Object, error) { return nil, forbidden },
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return nil, forbidden },
	}
	informer := newSyncInformer(lw, &tokensv1alpha1.ApiToken{}, 0, toolscache.Indexers{})
	mustNot(t, informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *toolscache.Reflector, err error) {
		select {
		case failed <- err:
		default:
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { informer.RunWithContext(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-failed:
		if !apierrors.IsForbidden(err) {
			t.Errorf("the watch error handler got %v, want the list's 403", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch error handler was not called")
	}
	if informer.HasSynced() {
		t.Error("HasSynced is true without a list")
	}
}
