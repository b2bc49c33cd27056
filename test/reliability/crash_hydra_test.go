package reliability

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

// TestCrashConsistencyHydra runs the trials of TestCrashConsistency against a
// real Ory Hydra (a TokenBackend of type Hydra), a backend that never returns a
// secret: the operator generates each client secret, writes it ahead into a
// pending Secret before the call that sets it, and after a crash asks Hydra's
// token endpoint which one is live. The operator is crashed at every step of
// create, reset, rotation (in place and with overlap), disable/enable and
// deletion, and again in the pass that recovers; Hydra's answers are lost,
// 5xx'd and 429'd by the same transport. Besides the invariants of every
// trial, a consumer uses the Secret throughout each trial and may be refused
// only while a reset (or a rotation in place), a disable or a deletion is
// carried out.
//
// Replay a failure: go test ./test/reliability -run 'TestCrashConsistencyHydra$' -seed N -trials M
func TestCrashConsistencyHydra(t *testing.T) {
	h := framework.NewHydra(t, filepath.Join("..", ".."))
	seed := trialSeed(t)
	o := crashWorldOptions(seed)
	o.hydra = h
	w := newWorld(t, "crash-hydra", o)
	runCrashTrials(t, w, seed, *trialsFlag, " (Hydra)")
}

// randomSecret is a client secret of the form the operator generates, for a
// token the test makes itself in a backend that takes the secret from its
// caller.
func randomSecret() backend.AuthToken {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return backend.AuthToken(base64.RawURLEncoding.EncodeToString(b))
}

// credentialsOf reads the credentials out of the ApiToken's Secret where the
// operator puts them for the world's backend type: username and password in a
// basic-auth Secret; otherwise accountSid and authToken, or for Hydra clientId,
// clientSecret and tokenUrl, which must be the token endpoint.
func (w *world) credentialsOf(secret *corev1.Secret) (backend.Credentials, []string) {
	if w.hydra == nil || secret.Type == corev1.SecretTypeBasicAuth {
		return framework.CredentialsOf(secret), nil
	}
	var v []string
	if got := string(secret.Data[tokensv1alpha1.DefaultTokenURLKey]); got != w.hydra.TokenURL {
		v = append(v, fmt.Sprintf("the Secret's %s is %q, want Hydra's token endpoint", tokensv1alpha1.DefaultTokenURLKey, got))
	}
	return framework.CredentialsAt(secret, tokensv1alpha1.DefaultClientIDKey, tokensv1alpha1.DefaultClientSecretKey), v
}

// checkSettled checks an ApiToken that is Ready after what: nothing is left
// written ahead (the pending Secret goes once its secret is delivered or
// found dead), and it remembers the Secret's secret for the leak search.
func (w *world) checkSettled(ctx context.Context, s *trialState, what string, watch *consumerWatch) []string {
	var v []string
	pending := &corev1.Secret{}
	err := k8s.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name + "-pending"}, pending)
	switch {
	case err == nil:
		v = append(v, fmt.Sprintf("a secret written ahead (Secret %s) is left over while Ready after %s", pending.Name, what))
	case !apierrors.IsNotFound(err):
		v = append(v, err.Error())
	}
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name}, secret); err == nil {
		creds, _ := w.credentialsOf(secret)
		watch.observe(creds)
	}
	return v
}

// checkNoOperatorSecretsLeft checks a deleted ApiToken: neither its pending
// Secret nor its source Secret outlives it, under any deletion policy (they
// are the operator's, of no use without the ApiToken; nothing else would ever
// delete them: envtest has no garbage collector, and the operator must not
// count on one).
func checkNoOperatorSecretsLeft(ctx context.Context, s *trialState) []string {
	list := &corev1.SecretList{}
	if err := k8s.List(ctx, list, client.InNamespace(s.ns)); err != nil {
		return []string{err.Error()}
	}
	var v []string
	for _, secret := range list.Items {
		if secret.Name == s.name+"-pending" || strings.HasPrefix(secret.Name, "apitoken-pending-") || strings.HasPrefix(secret.Name, "apitoken-source-") {
			v = append(v, fmt.Sprintf("Secret %s (%s) outlived its deleted ApiToken", secret.Name, secret.Type))
		}
	}
	return v
}

// checkOrphanedSecretWorks checks the Secret an ApiToken left behind with its
// token (Orphan, or deleted while paused): its consumers keep working, unless
// the token was disabled before.
func checkOrphanedSecretWorks(ctx context.Context, w *world, s *trialState, secret *corev1.Secret) []string {
	creds, v := w.credentialsOf(secret)
	want := http.StatusOK
	if s.disabled {
		want = http.StatusUnauthorized
	}
	if got := w.verify(ctx, creds, s.scopes[0]); got != want {
		v = append(v, fmt.Sprintf("the Secret left behind with its token: verify %s %d, want %d", s.scopes[0], got, want))
	}
	return v
}

// checkNoLeaks searches what a trial left in the API server (its namespace's
// events and ApiTokens), the operator's metrics and what it logged during the
// trial for every secret the trial's Secret held, in every form.
func (w *world) checkNoLeaks(ctx context.Context, s *trialState, secrets []string, trialLogs string) []string {
	if len(secrets) == 0 {
		return []string{"no secret was ever seen in the Secret: the leak search proves nothing"}
	}
	places, err := framework.ClusterHaystacks(ctx, k8s, s.ns)
	if err != nil {
		return []string{err.Error()}
	}
	if trialLogs != "" {
		places["operator logs"] = trialLogs
	}
	if places["metrics"], err = framework.InProcessMetrics(); err != nil {
		return []string{err.Error()}
	}
	leaks, err := framework.FindLeaks(secrets, places)
	if err != nil {
		return []string{err.Error()}
	}
	w.leakSearched += len(secrets)
	return leaks
}

// consumerCounts sum up what the consumers of every trial saw.
type consumerCounts struct {
	probes, refusedExpected, refusedOutside int
}

// consumerWatch follows one trial's Secret. In a Hydra world it is also the
// Secret's consumer: it reads the Secret and asks the token endpoint with what
// it holds, over and over, as a workload that mounts it would. (Not in a
// tokenservice world: tokenservice throttles a credential that keeps failing,
// which would then refuse the trial's own checks.)
type consumerWatch struct {
	w   *world
	key client.ObjectKey

	mu sync.Mutex
	// windows are the trial's steps in order; a refusal is expected only
	// during one whose refusable is set.
	windows []consumerWindow
	seen    map[string]bool
	counts  consumerCounts
	outside []string

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

type consumerWindow struct {
	what      string
	refusable bool
}

// watchConsumer starts following the trial's Secret (which need not exist yet).
func (w *world) watchConsumer(s *trialState) *consumerWatch {
	c := &consumerWatch{w: w, key: client.ObjectKey{Namespace: s.ns, Name: s.name}, seen: map[string]bool{}, done: make(chan struct{})}
	c.windows = []consumerWindow{{what: "the start"}}
	ctx, cancel := context.WithCancel(w.t.Context())
	c.cancel = cancel
	if w.hydra == nil {
		close(c.done)
		return c
	}
	go c.consume(ctx)
	return c
}

// during starts a step of the trial; refusable says that the consumer may be
// refused while it is carried out (its secret is reset, its token disabled or
// deleted).
func (c *consumerWatch) during(what string, refusable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.windows = append(c.windows, consumerWindow{what: what, refusable: refusable})
}

func (c *consumerWatch) window() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.windows) - 1
}

// observe remembers a secret the Secret held, for the leak search.
func (c *consumerWatch) observe(creds backend.Credentials) {
	if creds.AuthToken == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[creds.AuthToken.Reveal()] = true
}

func (c *consumerWatch) secrets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.seen))
	for secret := range c.seen {
		out = append(out, secret)
	}
	return out
}

func (c *consumerWatch) stop() {
	c.stopOnce.Do(func() {
		c.cancel()
		<-c.done
	})
}

// consume is the consumer's loop. A request is a refusal outside a reset when
// no step from the read of the Secret to the answer allowed one.
func (c *consumerWatch) consume(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		first := c.window()
		secret := &corev1.Secret{}
		if err := k8s.Get(ctx, c.key, secret); err != nil {
			continue // not there yet, or gone
		}
		creds, _ := c.w.credentialsOf(secret)
		if creds.AccountSID == "" || creds.AuthToken == "" {
			continue
		}
		c.observe(creds)
		code := c.w.verify(ctx, creds, "")
		if ctx.Err() != nil {
			return
		}
		last := c.window()
		c.mu.Lock()
		switch code {
		case http.StatusOK:
			c.counts.probes++
		case http.StatusUnauthorized:
			c.counts.probes++
			refusable := false
			for _, win := range c.windows[first : last+1] {
				refusable = refusable || win.refusable
			}
			if refusable {
				c.counts.refusedExpected++
			} else {
				c.counts.refusedOutside++
				c.outside = append(c.outside, fmt.Sprintf("the consumer was refused (client %s) during %s", creds.AccountSID, c.windows[last].what))
			}
		}
		c.mu.Unlock()
	}
}

// consumerRefusals adds a stopped watch's counts to the world's and returns
// each refusal outside a reset, a disable or a deletion as a violation.
func (w *world) consumerRefusals(c *consumerWatch) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.consumers.probes += c.counts.probes
	w.consumers.refusedExpected += c.counts.refusedExpected
	w.consumers.refusedOutside += c.counts.refusedOutside
	return c.outside
}

// TestHydraSupersededRotationKeepsItsConsumers: a rotation with overlap whose
// pass crashed after it delivered its successor's secret but before its status
// write, and that a second rotation supersedes while the operator is down. The
// successor is then in the consumers' hands although no status names it: the
// second rotation must make a client of its own, and retire the first one after
// the overlap, as any token the status lost is, rather than set a new secret on
// it, which would refuse its consumers during a rotation that promises none.
func TestHydraSupersededRotationKeepsItsConsumers(t *testing.T) {
	h := framework.NewHydra(t, filepath.Join("..", ".."))
	w := newWorld(t, "superseded", worldOptions{hydra: h})
	ns := "superseded"
	framework.CreateNamespace(t, k8s, ns, nil)
	at := newToken(ns, "tok", w.backend)
	at.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Minute}
	mustCreate(t, at)
	if err := settle(&trialState{ns: ns, name: "tok"}); err != nil {
		t.Fatal(err)
	}

	var delivered backend.Credentials
	meanwhile := make(chan error, 1)
	w.mu.Lock()
	w.beforeRestart = func() {
		secret := &corev1.Secret{}
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "tok"}, secret)
		if err == nil {
			delivered, _ = w.credentialsOf(secret)
			err = mutate(&trialState{ns: ns, name: "tok"}, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.RotateAnnotation, "second") })
		}
		meanwhile <- err
	}
	w.mu.Unlock()
	w.crasher.ArmAt("after k8s delete Secret (pending)")
	if err := mutate(&trialState{ns: ns, name: "tok"}, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.RotateAnnotation, "first") }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-meanwhile:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(framework.LongWait):
		t.Fatal("the operator never crashed after settling the first rotation's secret")
	}
	if err := settle(&trialState{ns: ns, name: "tok", rotateNonce: "second"}); err != nil {
		t.Fatal(err)
	}

	got := getToken(t, ns, "tok")
	if delivered.AccountSID != string(got.UID)+"-1" {
		t.Fatalf("the Secret held client %q when the operator crashed, want the first rotation's successor", delivered.AccountSID)
	}
	if got.Status.AccountSID == delivered.AccountSID {
		t.Errorf("the second rotation made no client of its own: the current client is still %s", delivered.AccountSID)
	}
	if !isRetiring(got, delivered.AccountSID) {
		t.Errorf("the first rotation's successor %s is not retiring: %+v", delivered.AccountSID, got.Status.RetiringTokens)
	}
	if code := w.verify(t.Context(), delivered, ""); code != http.StatusOK {
		t.Errorf("the consumers of the first rotation's successor are refused during the overlap: %d", code)
	}
	secret := &corev1.Secret{}
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "tok"}, secret); err != nil {
		t.Fatal(err)
	}
	if creds, _ := w.credentialsOf(secret); w.verify(t.Context(), creds, "") != http.StatusOK {
		t.Error("the Secret's client is refused")
	}
}

func isRetiring(at *tokensv1alpha1.ApiToken, sid string) bool {
	for _, r := range at.Status.RetiringTokens {
		if r.AccountSID == sid {
			return true
		}
	}
	return false
}

// TestHydraChangeReplayedAfterItsSecretWasDeliveredKeepsIt crashes the operator
// right after it delivered a create's, a reset's or a rotation's secret and
// settled the pending Secret, before its status write: the restarted operator
// replays the change, and must find the secret it delivered rather than set
// another one. Its consumers keep working, and the change happens once.
func TestHydraChangeReplayedAfterItsSecretWasDeliveredKeepsIt(t *testing.T) {
	h := framework.NewHydra(t, filepath.Join("..", ".."))
	w := newWorld(t, "replayed", worldOptions{hydra: h})
	cases := []struct {
		name string
		// change asks for the change on the Ready ApiToken (nil: the create is it).
		change         func(s *trialState) error
		overlap        bool
		wantGeneration int64
	}{
		{name: "create", wantGeneration: 1},
		{name: "reset", wantGeneration: 2, change: func(s *trialState) error {
			s.nonce = "once"
			return mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.ResetAnnotation, "once") })
		}},
		{name: "rotation-with-overlap", overlap: true, wantGeneration: 1, change: func(s *trialState) error {
			s.rotateNonce = "once"
			return mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.RotateAnnotation, "once") })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := "replayed-" + tc.name
			framework.CreateNamespace(t, k8s, ns, nil)
			s := &trialState{ns: ns, name: "tok"}
			at := newToken(ns, "tok", w.backend)
			if tc.overlap {
				at.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Minute}
			}
			delivered := make(chan backend.Credentials, 1)
			w.mu.Lock()
			w.beforeRestart = func() {
				secret := &corev1.Secret{}
				_ = k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "tok"}, secret)
				creds, _ := w.credentialsOf(secret)
				delivered <- creds
			}
			w.mu.Unlock()
			t.Cleanup(func() {
				w.mu.Lock()
				w.beforeRestart = nil
				w.mu.Unlock()
			})
			arm := func() { w.crasher.ArmAt("after k8s delete Secret (pending)") }
			if tc.change == nil {
				arm()
			}
			mustCreate(t, at)
			if tc.change != nil {
				if err := settle(s); err != nil {
					t.Fatal(err)
				}
				arm()
				if err := tc.change(s); err != nil {
					t.Fatal(err)
				}
			}
			var before backend.Credentials
			select {
			case before = <-delivered:
			case <-time.After(framework.LongWait):
				t.Fatal("the operator never crashed after settling the pending Secret")
			}
			if err := settle(s); err != nil {
				t.Fatal(err)
			}
			secret := &corev1.Secret{}
			if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "tok"}, secret); err != nil {
				t.Fatal(err)
			}
			after, _ := w.credentialsOf(secret)
			if after.AccountSID != before.AccountSID || after.AuthToken.Reveal() != before.AuthToken.Reveal() {
				t.Errorf("the replay delivered other credentials (client %s, same secret %v) than those delivered before the crash (client %s)",
					after.AccountSID, after.AuthToken.Reveal() == before.AuthToken.Reveal(), before.AccountSID)
			}
			if code := w.verify(t.Context(), before, ""); code != http.StatusOK {
				t.Errorf("the secret delivered before the crash is refused: %d", code)
			}
			tok, _, err := h.Admin.Get(t.Context(), after.AccountSID, "")
			if err != nil {
				t.Fatal(err)
			}
			if tok.Generation != tc.wantGeneration {
				t.Errorf("client %s at generation %d, want %d: the change happened more than once", tok.SID, tok.Generation, tc.wantGeneration)
			}
		})
	}
}

// TestHydraCreateAdoptedAfterACrashLeavesNothingPending: the first create
// fails (Hydra answers 429 three times), so the status says so; the next pass creates the
// client and delivers its secret, and the operator crashes before it deletes
// the pending Secret. The restarted operator finds the client by its owner and
// adopts it, with the Secret already delivered: the pending Secret, a copy of
// the live secret, must not outlive the pass that makes the ApiToken Ready.
func TestHydraCreateAdoptedAfterACrashLeavesNothingPending(t *testing.T) {
	h := framework.NewHydra(t, filepath.Join("..", ".."))
	rules := &faults.Rules{}
	failed := rules.Add(3, faults.TooMany, func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Path == "/admin/clients"
	})
	w := newWorld(t, "adopted", worldOptions{hydra: h, policy: rules.Policy})
	ns := "adopted"
	framework.CreateNamespace(t, k8s, ns, nil)
	crashed := make(chan struct{})
	w.mu.Lock()
	w.beforeRestart = func() { close(crashed) }
	w.mu.Unlock()
	w.crasher.ArmAt("before k8s delete Secret (pending)")
	mustCreate(t, newToken(ns, "tok", w.backend))
	select {
	case <-crashed:
	case <-time.After(framework.LongWait):
		t.Fatal("the operator never crashed before deleting the pending Secret")
	}
	if failed.Fired() != 3 {
		t.Fatalf("the first create failed %d times, want 3 (one pass's attempts)", failed.Fired())
	}
	s := &trialState{ns: ns, name: "tok"}
	if err := settle(s); err != nil {
		t.Fatal(err)
	}
	watch := w.watchConsumer(s)
	defer watch.stop()
	for _, v := range w.checkSettled(t.Context(), s, "create", watch) {
		t.Error(v)
	}
	secret := &corev1.Secret{}
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "tok"}, secret); err != nil {
		t.Fatal(err)
	}
	if creds, _ := w.credentialsOf(secret); w.verify(t.Context(), creds, "") != http.StatusOK {
		t.Error("the Secret's client is refused")
	}
}
