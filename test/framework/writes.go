package framework

// This file: asserting that nothing was written. Sleeping and then comparing
// resourceVersions misses every write that lands after the second read; a
// watch started at the resourceVersion the test knows replays every write
// since, whenever it landed, for as long as the watch runs.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// WriteWatch records every write to the objects of one kind (in one
// namespace, or one object) from a known resourceVersion on.
type WriteWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	writes []string
	err    error
}

// WatchWrites starts a WriteWatch on the objects of gvk in namespace (every
// namespace when empty; name, when set, narrows it to that object), from
// resourceVersion: every write after that version is recorded, also one that
// landed before this call.
func WatchWrites(ctx context.Context, c client.WithWatch, gvk schema.GroupVersionKind, namespace, name, resourceVersion string) (*WriteWatch, error) {
	if resourceVersion == "" {
		return nil, fmt.Errorf("watch %s writes: no resourceVersion to start from", gvk.Kind)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	raw := &metav1.ListOptions{ResourceVersion: resourceVersion}
	if name != "" {
		raw.FieldSelector = "metadata.name=" + name
	}
	ctx, cancel := context.WithCancel(ctx)
	w, err := c.Watch(ctx, list, &client.ListOptions{Namespace: namespace, Raw: raw})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s from resourceVersion %s: %w", gvk.Kind, resourceVersion, err)
	}
	ww := &WriteWatch{cancel: cancel, done: make(chan struct{})}
	go ww.record(ctx, w, gvk.Kind)
	return ww, nil
}

func (ww *WriteWatch) record(ctx context.Context, w watch.Interface, kind string) {
	defer close(ww.done)
	defer w.Stop()
	for ev := range w.ResultChan() {
		ww.mu.Lock()
		switch ev.Type {
		case watch.Bookmark:
		case watch.Error:
			// A watch that failed (410 Gone, say) proves nothing from then on;
			// one ended by Stop is done.
			if ctx.Err() == nil {
				ww.err = fmt.Errorf("the watch of %s failed: %v", kind, ev.Object)
			}
		default:
			what := fmt.Sprintf("%T", ev.Object)
			if obj, ok := ev.Object.(client.Object); ok {
				what = fmt.Sprintf("%s %s/%s (resourceVersion %s)", kind, obj.GetNamespace(), obj.GetName(), obj.GetResourceVersion())
			}
			ww.writes = append(ww.writes, string(ev.Type)+" "+what)
		}
		ww.mu.Unlock()
	}
}

// WatchWritesFromNow starts a WriteWatch on the objects of gvk in namespace
// from the resourceVersion of a list of them read now.
func WatchWritesFromNow(ctx context.Context, c client.WithWatch, gvk schema.GroupVersionKind, namespace string) (*WriteWatch, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list %s: %w", gvk.Kind, err)
	}
	return WatchWrites(ctx, c, gvk, namespace, "", list.ResourceVersion)
}

// Seen returns the writes recorded so far, and keeps watching.
func (ww *WriteWatch) Seen() []string {
	ww.mu.Lock()
	defer ww.mu.Unlock()
	return slices.Clone(ww.writes)
}

// Stop keeps watching for quiet more, then stops, and returns the writes seen
// since the watch's resourceVersion. A watch that ended early is an error: it
// could have missed a write.
func (ww *WriteWatch) Stop(quiet time.Duration) ([]string, error) {
	select {
	case <-ww.done:
		ww.mu.Lock()
		if ww.err == nil {
			ww.err = errors.New("the watch ended before the quiet period did: it could have missed a write")
		}
		ww.mu.Unlock()
	case <-time.After(quiet):
	}
	ww.cancel()
	<-ww.done
	ww.mu.Lock()
	defer ww.mu.Unlock()
	return ww.writes, ww.err
}

// ExpectNoWrites fails the test when obj is written within QuietPeriod after
// the resourceVersion it carries: from the version the test read, not from
// the moment it looks, so an early write counts as surely as a late one.
func ExpectNoWrites(t testing.TB, c client.WithWatch, obj client.Object, why string) {
	t.Helper()
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	if err != nil {
		t.Fatal(err)
	}
	ww, err := WatchWrites(t.Context(), c, gvk, obj.GetNamespace(), obj.GetName(), obj.GetResourceVersion())
	if err != nil {
		t.Fatal(err)
	}
	writes, err := ww.Stop(QuietPeriod)
	if err != nil {
		t.Fatal(err)
	}
	if len(writes) > 0 {
		t.Errorf("%s: %s was written: %v", why, obj.GetName(), writes)
	}
}
