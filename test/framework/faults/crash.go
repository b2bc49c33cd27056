package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// ErrCrashed is what every call returns once the simulated process has crashed.
var ErrCrashed = errors.New("simulated crash")

// Crasher crashes the operator at a chosen step. Steps are the backend calls and
// Kubernetes writes, each counted twice: before the call ("before create") and
// after it returned ("after create": the effect happened, the process died before
// it could use the result). Arm(n) crashes at the n-th step from now; from then on
// every wrapped call fails until Restarted.
type Crasher struct {
	mu        sync.Mutex
	countdown int // 0 = disarmed
	crashed   bool
	lastStep  string
	crashedAt map[string]int
	restarts  chan struct{}
}

// NewCrasher returns a disarmed Crasher.
func NewCrasher() *Crasher {
	return &Crasher{crashedAt: map[string]int{}, restarts: make(chan struct{}, 1)}
}

// Arm makes the n-th step from now crash (n >= 1).
func (c *Crasher) Arm(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.countdown = n
}

// Crashes signals each crash; the harness restarts the operator on it.
func (c *Crasher) Crashes() <-chan struct{} { return c.restarts }

// Restarted clears the crash: the new process starts.
func (c *Crasher) Restarted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crashed = false
	c.countdown = 0
}

// CrashedAt returns how many crashes happened at each step.
func (c *Crasher) CrashedAt() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.crashedAt)
}

// step is called before ("before X") and after ("after X") each call. It reports
// whether the process is (now) crashed.
func (c *Crasher) step(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return true
	}
	if c.countdown == 0 {
		return false
	}
	c.countdown--
	if c.countdown > 0 {
		return false
	}
	c.crashed = true
	c.lastStep = name
	c.crashedAt[name]++
	select {
	case c.restarts <- struct{}{}:
	default:
	}
	return true
}

func (c *Crasher) around(name string, call func() error) error {
	if c.step("before " + name) {
		return fmt.Errorf("%s: %w", name, ErrCrashed)
	}
	err := call()
	if c.step("after " + name) {
		return fmt.Errorf("%s: %w", name, ErrCrashed)
	}
	return err
}

// Backend wraps a backend so that its calls are crash steps.
func (c *Crasher) Backend(b backend.Backend) backend.Backend { return &crashingBackend{next: b, c: c} }

// Client wraps a Kubernetes client so that its writes are crash steps. Reads pass
// through: a crashed process does not read either, but its reads change nothing.
func (c *Crasher) Client(k client.Client) client.Client { return &crashingClient{Client: k, c: c} }

type crashingBackend struct {
	next backend.Backend
	c    *Crasher
}

func (b *crashingBackend) Capabilities() backend.Capabilities { return b.next.Capabilities() }

func (b *crashingBackend) Catalog(ctx context.Context) (*backend.Catalog, error) {
	return b.next.Catalog(ctx) // the TokenBackend controller is not under test
}

func (b *crashingBackend) Create(ctx context.Context, key string, req backend.CreateRequest) (tok *backend.Token, creds backend.Credentials, err error) {
	err = b.c.around("backend create", func() (err error) {
		tok, creds, err = b.next.Create(ctx, key, req)
		return err
	})
	return tok, creds, err
}

func (b *crashingBackend) FindByExternalID(ctx context.Context, id string) (out []backend.Token, err error) {
	err = b.c.around("backend find", func() (err error) {
		out, err = b.next.FindByExternalID(ctx, id)
		return err
	})
	return out, err
}

func (b *crashingBackend) Get(ctx context.Context, sid, etag string) (tok *backend.Token, modified bool, err error) {
	err = b.c.around("backend get", func() (err error) {
		tok, modified, err = b.next.Get(ctx, sid, etag)
		return err
	})
	return tok, modified, err
}

func (b *crashingBackend) Update(ctx context.Context, sid, etag string, p backend.TokenPatch) (tok *backend.Token, err error) {
	err = b.c.around("backend update", func() (err error) {
		tok, err = b.next.Update(ctx, sid, etag, p)
		return err
	})
	return tok, err
}

func (b *crashingBackend) Credentials(ctx context.Context, sid string) (creds backend.Credentials, err error) {
	err = b.c.around("backend credentials", func() (err error) {
		creds, err = b.next.Credentials(ctx, sid)
		return err
	})
	return creds, err
}

func (b *crashingBackend) Reset(ctx context.Context, sid, key string, next backend.AuthToken) (creds backend.Credentials, err error) {
	err = b.c.around("backend reset", func() (err error) {
		creds, err = b.next.Reset(ctx, sid, key, next)
		return err
	})
	return creds, err
}

func (b *crashingBackend) SecretAccepted(ctx context.Context, sid string, secret backend.AuthToken) (live bool, err error) {
	err = b.c.around("backend secret accepted", func() (err error) {
		live, err = b.next.SecretAccepted(ctx, sid, secret)
		return err
	})
	return live, err
}

func (b *crashingBackend) Delete(ctx context.Context, sid string) error {
	return b.c.around("backend delete", func() error { return b.next.Delete(ctx, sid) })
}

type crashingClient struct {
	client.Client
	c *Crasher
}

func (k *crashingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return k.c.around("k8s create "+kindOf(obj), func() error { return k.Client.Create(ctx, obj, opts...) })
}

func (k *crashingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return k.c.around("k8s update "+kindOf(obj), func() error { return k.Client.Update(ctx, obj, opts...) })
}

func (k *crashingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return k.c.around("k8s patch "+kindOf(obj), func() error { return k.Client.Patch(ctx, obj, patch, opts...) })
}

func (k *crashingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return k.c.around("k8s delete "+kindOf(obj), func() error { return k.Client.Delete(ctx, obj, opts...) })
}

func (k *crashingClient) Status() client.SubResourceWriter {
	return &crashingStatus{SubResourceWriter: k.Client.Status(), c: k.c}
}

type crashingStatus struct {
	client.SubResourceWriter
	c *Crasher
}

func (s *crashingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	return s.c.around("k8s status "+kindOf(obj), func() error { return s.SubResourceWriter.Patch(ctx, obj, patch, opts...) })
}

// kindOf names the object's Go type, e.g. "Secret" or "ApiToken".
func kindOf(obj client.Object) string {
	if kind := obj.GetObjectKind().GroupVersionKind().Kind; kind != "" {
		return kind // a PartialObjectMetadata handle names what it stands for
	}
	t := fmt.Sprintf("%T", obj)
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' {
			return t[i+1:]
		}
	}
	return t
}
