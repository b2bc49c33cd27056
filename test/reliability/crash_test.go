package reliability

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

var (
	trialsFlag = flag.Int("trials", 30, "randomized crash-consistency trials of each backend type (make crash-trials runs 300)")
	seedFlag   = flag.Uint64("seed", 0, "seed of the trials; 0 picks one (printed, so a failure can be replayed)")
)

var allScopes = []string{"reports:read", "reports:write", "actions:read", "deals:read", "invoices:read", "clicks:write"}

// TestCrashConsistency runs randomized trials of create, spec updates, resets,
// rotations (in place and with overlap, with and without a restart target),
// disable/enable and delete under every deletion policy, with the operator crashed
// at random steps (before and after each backend call and Kubernetes write) and
// responses lost, 5xx'd and 429'd by the transport, and a hostile tenant
// (forged statuses naming another tenant's token, nonces longer than the status
// holds, rotate storms). After each trial settles it checks the invariants of
// docs/design.md (1-9); after each step, that nothing written ahead is left
// once the ApiToken is Ready; after a deletion, that none of the operator's own
// Secrets outlives the ApiToken and that a Secret left behind with its token
// still works; and that no secret the Secret held reached an event, a status, a
// metric or the operator's log. TestCrashConsistencyHydra runs the same trials
// against Ory Hydra.
//
// Replay a failure: go test ./test/reliability -run 'TestCrashConsistency$' -seed N -trials M
func TestCrashConsistency(t *testing.T) {
	seed := trialSeed(t)
	w := newWorld(t, "crash", crashWorldOptions(seed))
	runCrashTrials(t, w, seed, *trialsFlag, "")
}

// trialSeed is -seed, or a new seed that the log prints for a replay.
func trialSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -run '%s$' -seed %d -trials %d)", seed, t.Name(), seed, *trialsFlag)
	return seed
}

// crashWorldOptions are the transport faults of the trials, from the seed.
func crashWorldOptions(seed uint64) worldOptions {
	return worldOptions{
		policy: faults.Random(seed, map[faults.Kind]float64{
			faults.LostResponse: 0.05, faults.ServerError: 0.03, faults.ResetConn: 0.02, faults.TooMany: 0.01, faults.Latency: 0.02,
		}),
		retryAfter: time.Second,
		resync:     5 * time.Second,
		adoption:   true,
	}
}

// runCrashTrials runs the trials in w and reports what they injected and every
// violation. label tells the backend type apart in the summary lines ("" or
// " (Hydra)"), which make crash-trials prints.
func runCrashTrials(t *testing.T, w *world, seed uint64, trials int, label string) {
	var violations []string
	start := time.Now()
	for i := range trials {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		for _, v := range runTrial(t, w, rng, i) {
			violations = append(violations, fmt.Sprintf("trial %d: %s", i, v))
		}
	}
	crashes := w.crasher.CrashedAt()
	injected := w.transport.Injected()
	total := 0
	for _, n := range crashes {
		total += n
	}
	for _, n := range injected {
		total += n
	}
	t.Logf("crash points hit%s: %s", label, formatCounts(crashes))
	t.Logf("transport faults%s: %s", label, formatCounts(injected))
	t.Logf("hostile tenant%s: %s", label, formatCounts(w.hostileOps))
	consumers := ""
	if w.consumers.probes > 0 {
		consumers = fmt.Sprintf(", %d consumer requests (%d refused during a reset, a disable or a deletion, %d refused outside one)",
			w.consumers.probes, w.consumers.refusedExpected, w.consumers.refusedOutside)
	}
	// Retry-After is checked by TestRetryAfterIsHonoured; here restarts, which
	// forget it by nature, would count against it.
	summary := fmt.Sprintf("crash-consistency%s: seed %d, %d trials, %d faults injected (%d crashes, %d operator restarts)%s, %d secrets searched for leaks, %d violations, %s",
		label, seed, trials, total, sum(crashes), w.restarts, consumers, w.leakSearched, len(violations), time.Since(start).Round(time.Second))
	fmt.Println(summary)
	t.Log(summary)
	for _, v := range violations {
		t.Error(v)
	}
}

func sum[K comparable](m map[K]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func formatCounts[K ~string](m map[K]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[K(k)])
	}
	return strings.Join(parts, " ")
}

// trialState is what the trial has asked for so far.
type trialState struct {
	ns, name    string
	uid         string
	scopes      []string
	disabled    bool
	policy      tokensv1alpha1.DeletionPolicy
	nonce       string
	resets      int // nonces issued after creation
	deleted     bool
	sid         string
	foreignRV   string
	description string

	overlap     bool   // spec.rotation.overlap > 0: a rotation makes a new token
	rotateNonce string // the last rotate annotation value
	nonces      []string
	generation  int64                // the current token's expected credential generation
	restarts    bool                 // a Deployment is a restart target
	rolls       int64                // credential changes that must have rolled it, each once
	adopted     *backend.Credentials // the credentials of a hand-made token the ApiToken adopted
	// pausedDelete: the ApiToken was paused before it was deleted.
	pausedDelete bool
	// victim is another tenant's token (externalId of no ApiToken): the hostile
	// operations name it in the status; it must come out untouched (invariant 9).
	victim      *backend.Token
	victimCreds backend.Credentials
	// stormed: a rotate storm coalesces nonces, so the number of changes is known
	// only within bounds (minChanges..maxChanges since the storm began).
	stormed bool
}

// trialOverlap is short, so that retiring tokens are deleted within a trial.
const trialOverlap = 2 * time.Second

func runTrial(t *testing.T, w *world, rng *rand.Rand, i int) []string {
	t.Helper()
	ctx := t.Context()
	s := &trialState{ns: fmt.Sprintf("%s-%d", w.backend, i), name: "tok"}
	s.policy = []tokensv1alpha1.DeletionPolicy{"Delete", "Disable", "Orphan"}[rng.IntN(3)]
	s.scopes = pickScopes(rng)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return []string{err.Error()}
	}
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "foreign", Namespace: s.ns}, Data: map[string][]byte{"k": []byte("v")}}
	if err := k8s.Create(ctx, foreign); err != nil {
		return []string{err.Error()}
	}
	s.foreignRV = foreign.ResourceVersion
	// SID and AuthToken are for a type that takes both from its caller (Hydra);
	// tokenservice chooses its own.
	victim, victimCreds, err := w.admin.Create(ctx, "victim-"+s.ns, backend.CreateRequest{
		Name: "another tenant's", PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}, State: backend.StateEnabled, ExternalID: "victim-" + s.ns,
		SID: "victim-" + s.ns, AuthToken: randomSecret(),
	})
	if err != nil {
		return []string{"victim token: " + err.Error()}
	}
	s.victim, s.victimCreds = victim, victimCreds

	// A type that never returns a secret writes each one ahead and, after a
	// crash, asks its token endpoint which one is live: its passes have more
	// steps (the pending and source Secrets), and the pass that recovers is
	// crashed too, at its own steps.
	writesAhead := !w.admin.Capabilities().RetrievableSecrets
	armMaybe := func() {
		if rng.Float64() >= 0.7 {
			return
		}
		if !writesAhead {
			w.crasher.Arm(1 + rng.IntN(10))
			return
		}
		w.crasher.Arm(1 + rng.IntN(16))
		if rng.Float64() < 0.4 {
			w.crasher.ThenArm(1 + rng.IntN(6))
		}
	}
	trialLogs := len(logs.String())
	watch := w.watchConsumer(s)
	defer watch.stop()
	// Create.
	at := &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns},
		Spec: tokensv1alpha1.ApiTokenSpec{
			BackendRef: tokensv1alpha1.BackendReference{Name: w.backend}, PrimaryContact: "ops@example.com",
			Scopes: s.scopes, DeletionPolicy: s.policy,
		},
	}
	if rng.IntN(2) == 0 {
		at.Spec.Secret.Type = corev1.SecretTypeBasicAuth
	}
	if rng.IntN(4) == 0 {
		s.nonce = fmt.Sprintf("initial-%d", i)
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: s.nonce}
	}
	s.generation = 1
	if s.overlap = rng.IntN(2) == 0; s.overlap {
		at.Spec.Rotation.Overlap = &metav1.Duration{Duration: trialOverlap}
	}
	if s.restarts = rng.IntN(2) == 0; s.restarts {
		if err := k8s.Create(ctx, framework.ConsumerDeployment(s.ns, "consumer", secretNameOf(at))); err != nil {
			return []string{err.Error()}
		}
		at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{{Kind: tokensv1alpha1.RestartTargetDeployment, Name: "consumer"}}
	}
	// Adoption keeps the hand-made token's consumers only where the operator
	// can read its secret; a type that never returns one must set a new secret.
	if rng.IntN(4) == 0 && !writesAhead {
		if err := adoptHandMade(ctx, w, s, at); err != nil {
			return []string{err.Error()}
		}
	}
	armMaybe()
	watch.during("create", false)
	if err := k8s.Create(ctx, at); err != nil {
		return []string{err.Error()}
	}
	s.uid = string(at.UID)
	if err := settle(s); err != nil {
		return []string{"create did not settle: " + err.Error()}
	}
	var violations []string
	violations = append(violations, w.checkSettled(ctx, s, "create", watch)...)
	watch.during("Ready after create", false)
	if s.adopted != nil && w.verify(ctx, *s.adopted, s.scopes[0]) != 200 {
		return []string{"the hand-made token's consumer was refused after the adoption"}
	}

	for op := range 1 + rng.IntN(4) {
		w.crasher.Arm(0)
		armMaybe()
		var err error
		var what string
		switch rng.IntN(6) {
		case 5:
			what, err = hostileTenant(w, s, rng, i, op, watch)
		case 4:
			what = "pause and resume"
			watch.during(what, s.disabled)
			err = pauseAndResume(s)
		case 0:
			what = "spec update"
			watch.during(what, s.disabled)
			s.scopes = pickScopes(rng)
			s.description = fmt.Sprintf("op %d", op)
			err = mutate(s, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = s.scopes; at.Spec.Description = s.description })
		case 1:
			what = "reset"
			watch.during(what, true)
			s.nonce = fmt.Sprintf("reset-%d-%d", i, op)
			s.resets++
			s.generation++
			s.rolls++
			s.nonces = append(s.nonces, s.nonce)
			err = mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.ResetAnnotation, s.nonce) })
		case 3:
			what = "rotation in place"
			if s.overlap {
				what = "rotation with overlap"
			}
			// With overlap both tokens work until the Secret holds the new one.
			watch.during(what, !s.overlap || s.disabled)
			s.rotateNonce = fmt.Sprintf("rotate-%d-%d", i, op)
			s.generation++
			if s.overlap {
				s.generation = 1 // a new token
			}
			s.rolls++
			s.nonces = append(s.nonces, s.rotateNonce)
			err = mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.RotateAnnotation, s.rotateNonce) })
		case 2:
			what = map[bool]string{true: "enable", false: "disable"}[s.disabled]
			watch.during(what, true)
			s.disabled = !s.disabled
			err = mutate(s, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = s.disabled })
		}
		if err != nil {
			return []string{err.Error()}
		}
		if err := settle(s); err != nil {
			return append(violations, fmt.Sprintf("op %d (%s) did not settle: %v", op, what, err))
		}
		violations = append(violations, w.checkSettled(ctx, s, what, watch)...)
		watch.during("Ready after "+what, s.disabled)
	}
	if rng.IntN(2) == 0 {
		w.crasher.Arm(0)
		armMaybe()
		if rng.IntN(4) == 0 {
			// Deleted while paused: let go as under Orphan, without the backend.
			if err := pause(s); err != nil {
				return []string{err.Error()}
			}
			s.pausedDelete = true
		}
		watch.during("deletion", true)
		if err := k8s.Delete(ctx, &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns}}); err != nil {
			return []string{err.Error()}
		}
		s.deleted = true
		if err := settle(s); err != nil {
			return append(violations, "delete did not settle: "+err.Error())
		}
	}
	w.crasher.Arm(0)
	watch.stop()
	violations = append(violations, checkInvariants(t, w, s)...)
	violations = append(violations, w.consumerRefusals(watch)...)
	violations = append(violations, w.checkNoLeaks(ctx, s, watch.secrets(), logs.String()[trialLogs:])...)
	if !s.deleted {
		// Keep the live set small: every live ApiToken is resynced (and checked
		// again after each restart), which would slow later trials.
		_ = k8s.Delete(ctx, &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns}})
	}
	return violations
}

func pickScopes(rng *rand.Rand) []string {
	out := slices.Clone(allScopes)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	out = out[:1+rng.IntN(3)]
	slices.Sort(out)
	return out
}

func mutate(s *trialState, change func(*tokensv1alpha1.ApiToken)) error {
	return framework.Poll(framework.WaitTimeout, func() error {
		at := &tokensv1alpha1.ApiToken{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: s.name}, at); err != nil {
			return err
		}
		change(at)
		return k8s.Update(context.Background(), at)
	})
}

// settle waits until the operator has carried out everything asked so far.
func settle(s *trialState) error {
	return framework.Poll(framework.LongWait, func() error {
		at := &tokensv1alpha1.ApiToken{}
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: s.name}, at)
		if s.deleted {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return errors.New("ApiToken still there")
		}
		if err != nil {
			return err
		}
		ready := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionReady)
		switch {
		case ready == nil || ready.Status != metav1.ConditionTrue || at.Status.ObservedGeneration != at.Generation:
			return fmt.Errorf("not ready: %+v", at.Status.Conditions)
		case at.Status.LastHandledReset != recordedNonce(s.nonce):
			return fmt.Errorf("reset %q not handled (last %q)", recordedNonce(s.nonce), at.Status.LastHandledReset)
		case at.Status.LastHandledRotate != recordedNonce(s.rotateNonce):
			return fmt.Errorf("rotate %q not handled (last %q)", recordedNonce(s.rotateNonce), at.Status.LastHandledRotate)
		}
		s.sid = at.Status.AccountSID
		return nil
	})
}

func checkInvariants(t *testing.T, w *world, s *trialState) []string {
	ctx := t.Context()
	var v []string
	tokens, err := w.admin.FindByExternalID(ctx, s.uid)
	if err != nil {
		return []string{err.Error()}
	}
	foreign := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "foreign"}, foreign); err != nil || foreign.ResourceVersion != s.foreignRV {
		v = append(v, "the foreign Secret was changed or deleted")
	}
	secret := &corev1.Secret{}
	secretErr := k8s.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name}, secret)
	v = append(v, checkVictim(ctx, w, s, secret)...)

	if s.deleted {
		// The operator's own Secrets are of no use without the ApiToken, under
		// every policy.
		v = append(v, checkNoOperatorSecretsLeft(ctx, s)...)
	}
	if s.deleted && s.pausedDelete {
		// Orphan is allowed: the current token is left as it is, the retiring
		// ones deleted, the Secret kept.
		if !slices.ContainsFunc(tokens, func(t backend.Token) bool { return t.SID == s.sid }) {
			v = append(v, "the token of an ApiToken deleted while paused was touched")
		}
		if len(tokens) != 1 {
			v = append(v, fmt.Sprintf("%d backend tokens after a paused deletion (as Orphan), want 1: retiring tokens leaked", len(tokens)))
		}
		if secretErr != nil || metav1.GetControllerOf(secret) != nil {
			v = append(v, "the Secret of an ApiToken deleted while paused was not kept without its owner")
		} else {
			v = append(v, checkOrphanedSecretWorks(ctx, w, s, secret)...)
		}
		return v
	}
	if s.deleted {
		switch s.policy {
		case tokensv1alpha1.DeletionPolicyDelete:
			if len(tokens) != 0 {
				v = append(v, fmt.Sprintf("%d backend tokens left after delete under Delete", len(tokens)))
			}
		case tokensv1alpha1.DeletionPolicyDisable:
			for _, tok := range tokens {
				if tok.State != backend.StateDisabled {
					v = append(v, "a backend token is still enabled after delete under Disable")
				}
			}
		case tokensv1alpha1.DeletionPolicyOrphan:
			if len(tokens) != 1 {
				v = append(v, fmt.Sprintf("%d backend tokens after delete under Orphan, want 1", len(tokens)))
			}
		}
		secretKept := secretErr == nil
		if secretKept != (s.policy == tokensv1alpha1.DeletionPolicyOrphan) {
			v = append(v, fmt.Sprintf("Secret kept = %v after delete under %s", secretKept, s.policy))
		}
		if secretKept && metav1.GetControllerOf(secret) != nil {
			v = append(v, "an orphaned Secret still has its owner")
		}
		if secretKept {
			v = append(v, checkOrphanedSecretWorks(ctx, w, s, secret)...)
		}
		return v
	}

	at := &tokensv1alpha1.ApiToken{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name}, at); err != nil {
		return append(v, err.Error())
	}
	tok, problems := currentToken(tokens, at)
	if v = append(v, problems...); tok == nil {
		return v
	}
	v = append(v, checkLifecycle(ctx, s, at, tok)...)
	if !slices.Equal(tok.Scopes, s.scopes) {
		v = append(v, fmt.Sprintf("backend scopes %v, spec %v", tok.Scopes, s.scopes))
	}
	if (tok.State == backend.StateDisabled) != s.disabled {
		v = append(v, fmt.Sprintf("backend state %s, spec disabled=%v", tok.State, s.disabled))
	}

	if secretErr != nil {
		return append(v, "no Secret: "+secretErr.Error())
	}
	creds, problems := w.credentialsOf(secret)
	v = append(v, problems...)
	if creds.AccountSID != tok.SID {
		v = append(v, "the Secret holds another SID")
	}
	for _, scope := range s.scopes {
		want := 200
		if s.disabled {
			want = 401
		}
		if got := w.verify(context.Background(), creds, scope); got != want {
			v = append(v, fmt.Sprintf("verify %s with the Secret: %d, want %d", scope, got, want))
		}
	}
	if !s.disabled {
		for _, scope := range allScopes {
			if !slices.Contains(s.scopes, scope) {
				if got := w.verify(context.Background(), creds, scope); got != 403 {
					v = append(v, fmt.Sprintf("verify undeclared %s: %d, want 403", scope, got))
				}
				break
			}
		}
	}
	return v
}

func setAnnotation(at *tokensv1alpha1.ApiToken, key, value string) {
	if at.Annotations == nil {
		at.Annotations = map[string]string{}
	}
	at.Annotations[key] = value
}

// secretNameOf is the Secret an ApiToken's credentials go to.
func secretNameOf(at *tokensv1alpha1.ApiToken) string {
	if at.Spec.Secret.Name != "" {
		return at.Spec.Secret.Name
	}
	return at.Name
}

// currentToken checks invariant 1 for a live ApiToken: the backend holds exactly
// its current token and the retiring tokens its status lists, none past its
// deadline (with a little slack for the pass that deletes it).
func currentToken(tokens []backend.Token, at *tokensv1alpha1.ApiToken) (*backend.Token, []string) {
	var v []string
	want := map[string]bool{at.Status.AccountSID: true}
	for _, r := range at.Status.RetiringTokens {
		want[r.AccountSID] = true
		if time.Since(r.DeleteAfter.Time) > 5*time.Second {
			v = append(v, fmt.Sprintf("retiring token %s is %v past its deadline", r.AccountSID, time.Since(r.DeleteAfter.Time).Round(time.Second)))
		}
	}
	var current *backend.Token
	for i, tok := range tokens {
		if !want[tok.SID] {
			v = append(v, fmt.Sprintf("backend token %s is neither current nor listed as retiring", tok.SID))
		}
		if tok.SID == at.Status.AccountSID {
			current = &tokens[i]
		}
	}
	if len(tokens) != len(want) {
		v = append(v, fmt.Sprintf("%d backend tokens for 1 current + %d retiring", len(tokens), len(at.Status.RetiringTokens)))
	}
	if current == nil {
		v = append(v, "the status SID "+at.Status.AccountSID+" is not in the backend")
	}
	return current, v
}

// checkLifecycle checks invariant 3: each reset and rotation changed the
// credentials exactly once, each nonce is in the history once, and the restart
// target was rolled once per change, to the current credentials.
func checkLifecycle(ctx context.Context, s *trialState, at *tokensv1alpha1.ApiToken, tok *backend.Token) []string {
	var v []string
	if tok.Generation != s.generation && !s.stormed {
		v = append(v, fmt.Sprintf("current token at generation %d, want %d", tok.Generation, s.generation))
	}
	for _, nonce := range s.nonces {
		n := 0
		for _, c := range at.Status.History {
			if c.Nonce == recordedNonce(nonce) {
				n++
			}
		}
		if n != 1 {
			v = append(v, fmt.Sprintf("nonce %q is %d times in the history", nonce, n))
		}
	}
	if !s.restarts {
		return v
	}
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "consumer"}, d); err != nil {
		return append(v, err.Error())
	}
	if d.Generation != 1+s.rolls && !s.stormed {
		v = append(v, fmt.Sprintf("restart target rolled %d times for %d credential changes", d.Generation-1, s.rolls))
	}
	if s.stormed && d.Generation-1 > s.rolls {
		v = append(v, fmt.Sprintf("restart target rolled %d times for at most %d credential changes", d.Generation-1, s.rolls))
	}
	if want := fmt.Sprintf("%s/%d", tok.SID, tok.Generation); s.rolls > 0 && d.Spec.Template.Annotations[tokensv1alpha1.CredentialsAnnotation] != want {
		v = append(v, fmt.Sprintf("restart target annotated %q, want %q", d.Spec.Template.Annotations[tokensv1alpha1.CredentialsAnnotation], want))
	}
	return v
}

// adoptHandMade makes a token directly through the API, as the web UI would,
// with the trial's settings, and points the ApiToken at it with spec.adopt.
func adoptHandMade(ctx context.Context, w *world, s *trialState, at *tokensv1alpha1.ApiToken) error {
	tok, creds, err := w.admin.Create(ctx, "hand-made-"+s.ns, backend.CreateRequest{
		Name: at.Name, PrimaryContact: at.Spec.PrimaryContact, Scopes: s.scopes, State: backend.StateEnabled,
	})
	if err != nil {
		return fmt.Errorf("hand-made token: %w", err)
	}
	at.Spec.Adopt = &tokensv1alpha1.Adoption{AccountSID: tok.SID}
	s.adopted = &creds
	return nil
}

// pause sets the paused annotation and waits until the operator says Paused.
func pause(s *trialState) error {
	if err := mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.PausedAnnotation, "true") }); err != nil {
		return err
	}
	return framework.Poll(framework.LongWait, func() error {
		at := &tokensv1alpha1.ApiToken{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: s.name}, at); err != nil {
			return err
		}
		if !framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionPaused) {
			return errors.New("not paused yet")
		}
		return nil
	})
}

// pauseAndResume pauses the ApiToken, then removes the annotation: the operator
// resumes with a full check (settle waits for it).
func pauseAndResume(s *trialState) error {
	if err := pause(s); err != nil {
		return err
	}
	return mutate(s, func(at *tokensv1alpha1.ApiToken) { delete(at.Annotations, tokensv1alpha1.PausedAnnotation) })
}

// hostileTenant is the hostile-tenant fault: what a tenant with write access to
// its ApiToken and its status can try (invariant 9). One of: a status naming
// another tenant's token then a reset; another tenant's token listed as a due
// retiring token; a nonce far longer than the status can hold; a storm of
// rotate nonces. It returns which, and tells the consumer whether its
// requests may be refused meanwhile.
func hostileTenant(w *world, s *trialState, rng *rand.Rand, i, op int, watch *consumerWatch) (string, error) {
	kind := rng.IntN(4)
	what := []string{"forged-sid", "forged-retiring", "long-nonce", "rotate-storm"}[kind]
	w.hostileOps[what]++
	// The forged SID is followed by a reset, and a long nonce is a reset's.
	watch.during(what, kind == 0 || kind == 2 || (kind == 3 && !s.overlap) || s.disabled)
	switch kind {
	case 0:
		if err := forgeStatus(s, func(st *tokensv1alpha1.ApiTokenStatus) { st.AccountSID, st.BackendETag = s.victim.SID, "" }); err != nil {
			return what, err
		}
		s.nonce = fmt.Sprintf("forged-%d-%d", i, op)
		s.resets++
		s.generation++
		s.rolls++
		s.nonces = append(s.nonces, s.nonce)
		return what, mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.ResetAnnotation, s.nonce) })
	case 1:
		if err := forgeStatus(s, func(st *tokensv1alpha1.ApiTokenStatus) {
			st.RetiringTokens = append(st.RetiringTokens, tokensv1alpha1.RetiringToken{AccountSID: s.victim.SID, DeleteAfter: metav1.NewTime(time.Now().Add(-time.Minute))})
		}); err != nil {
			return what, err
		}
		s.description = fmt.Sprintf("forged retiring %d", op)
		return what, mutate(s, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = s.description })
	case 2:
		s.nonce = fmt.Sprintf("long-%d-%d-%s", i, op, strings.Repeat("n", 300+rng.IntN(4000)))
		s.resets++
		s.generation++
		s.rolls++
		s.nonces = append(s.nonces, s.nonce)
		return what, mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.ResetAnnotation, s.nonce) })
	}
	// A rotate storm: several nonces in a row; the operator may coalesce some
	// (the last one is always handled) but never leaves a token untracked.
	n := 3 + rng.IntN(8)
	for k := range n {
		s.rotateNonce = fmt.Sprintf("storm-%d-%d-%d", i, op, k)
		if err := mutate(s, func(at *tokensv1alpha1.ApiToken) { setAnnotation(at, tokensv1alpha1.RotateAnnotation, s.rotateNonce) }); err != nil {
			return what, err
		}
	}
	s.stormed = true
	s.rolls += int64(n)
	s.nonces = append(s.nonces, s.rotateNonce)
	return what, nil
}

// forgeStatus writes the ApiToken's status as a tenant with access to the status
// subresource can.
func forgeStatus(s *trialState, change func(*tokensv1alpha1.ApiTokenStatus)) error {
	return framework.Poll(framework.WaitTimeout, func() error {
		at := &tokensv1alpha1.ApiToken{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: s.ns, Name: s.name}, at); err != nil {
			return err
		}
		patch := client.MergeFrom(at.DeepCopy())
		change(&at.Status)
		return k8s.Status().Patch(context.Background(), at, patch)
	})
}

// checkVictim checks invariant 9: the other tenant's token that the hostile
// operations named is untouched (not reset, disabled, changed or deleted), and
// its credentials never reached this ApiToken's Secret.
func checkVictim(ctx context.Context, w *world, s *trialState, secret *corev1.Secret) []string {
	var v []string
	tok, _, err := w.admin.Get(ctx, s.victim.SID, "")
	switch {
	case err != nil:
		return []string{"another tenant's token named in a forged status is gone: " + err.Error()}
	case tok.Generation != 1 || tok.State != backend.StateEnabled || tok.ExternalID != s.victim.ExternalID || tok.Name != s.victim.Name:
		v = append(v, "another tenant's token named in a forged status was changed")
	}
	if w.verify(ctx, s.victimCreds, "reports:read") != 200 {
		v = append(v, "another tenant's consumers were refused")
	}
	for _, value := range secret.Data {
		if string(value) == s.victimCreds.AuthToken.Reveal() {
			v = append(v, "another tenant's auth token was written into this ApiToken's Secret")
		}
	}
	return v
}

// recordedNonce is the form the status keeps a nonce in (docs/design.md, Trust
// boundary): as it is up to 128 characters, else "sha256:" and the first 32 hex
// digits of its SHA-256.
func recordedNonce(nonce string) string {
	if len(nonce) <= 128 {
		return nonce
	}
	sum := sha256.Sum256([]byte(nonce))
	return "sha256:" + hex.EncodeToString(sum[:16])
}
