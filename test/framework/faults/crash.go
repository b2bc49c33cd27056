package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
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
// every wrapped call fails until Restarted. ThenArm crashes the restarted
// process too, in the pass that recovers from the first crash.
type Crasher struct {
	mu        sync.Mutex
	countdown int // 0 = disarmed
	crashed   bool
	lastStep  string
	crashedAt map[string]int
	restarts  chan struct{}
	// rearm holds the countdowns of the crashes after the next restarts, in order.
	rearm []int
	// at, when set, is the step to crash at, whenever it comes (ArmAt).
	at string
}

// NewCrasher returns a disarmed Crasher.
func NewCrasher() *Crasher {
	return &Crasher{crashedAt: map[string]int{}, restarts: make(chan struct{}, 1)}
}

// Arm makes the n-th step from now crash (n >= 1); 0 disarms. Either way it
// forgets the crashes ThenArm queued.
func (c *Crasher) Arm(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.countdown = n
	c.rearm = nil
	c.at = ""
}

// ArmAt makes the next step named step ("after k8s delete Secret (pending)")
// crash, however many steps come first: a test that needs one crash in one
// place, rather than a random one.
func (c *Crasher) ArmAt(step string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.countdown, c.rearm, c.at = 0, nil, step
}

// ThenArm makes the n-th step after the next restart crash as well: the
// restarted process dies while it recovers from the crash Arm caused (a write
// ahead left over, a create or reset not recorded). Called again, it queues a
// crash after each further restart. It has no effect unless that restart happens
// before the next Arm.
func (c *Crasher) ThenArm(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rearm = append(c.rearm, n)
}

// Crashes signals each crash; the harness restarts the operator on it.
func (c *Crasher) Crashes() <-chan struct{} { return c.restarts }

// Restarted clears the crash: the new process starts.
func (c *Crasher) Restarted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crashed = false
	c.countdown = 0
	if len(c.rearm) > 0 {
		c.countdown, c.rearm = c.rearm[0], c.rearm[1:]
	}
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
	switch {
	case c.at != "":
		if name != c.at {
			return false
		}
		c.at = ""
	case c.countdown == 0:
		return false
	default:
		c.countdown--
		if c.countdown > 0 {
			return false
		}
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
	return k.c.around("k8s create "+stepObject(obj), func() error { return k.Client.Create(ctx, obj, opts...) })
}

func (k *crashingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return k.c.around("k8s update "+stepObject(obj), func() error { return k.Client.Update(ctx, obj, opts...) })
}

func (k *crashingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return k.c.around("k8s patch "+stepObject(obj), func() error { return k.Client.Patch(ctx, obj, patch, opts...) })
}

func (k *crashingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	return k.c.around("k8s delete "+stepObject(obj), func() error { return k.Client.Delete(ctx, obj, opts...) })
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

// stepObject names what a Kubernetes write is about: the object's kind, and for
// the operator's own Secrets beside the consumer's, which one, so that the
// counts tell a crash around the secret written ahead ("Secret (pending)") or
// the operator's copy ("Secret (source)") from one around the consumer's
// Secret. The names are the operator's (controllers/write_ahead.go,
// secret_layout.go), which this package cannot import.
func stepObject(obj client.Object) string {
	kind := kindOf(obj)
	if kind != "Secret" {
		return kind
	}
	switch name := obj.GetName(); {
	case strings.HasSuffix(name, "-pending") || strings.HasPrefix(name, "apitoken-pending-"):
		return "Secret (pending)"
	case strings.HasPrefix(name, "apitoken-source-"):
		return "Secret (source)"
	}
	return kind
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
