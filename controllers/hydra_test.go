package controllers

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// The Hydra backend type through the whole operator: a real Hydra, the
// manager of the suite, and a TokenBackend "hydra" of type Hydra.

const hydraBackendName = "hydra"

var (
	hydraOnce sync.Once
	testHydra *framework.Hydra
	hydraErr  error
	// hydraSecrets are the client secrets the operator delivered, for the
	// suite's leak search.
	hydraSecrets sync.Map
)

// hydraServer starts the suite's Hydra and its TokenBackend the first time a
// test needs them (runSuite stops it).
func hydraServer(t *testing.T) *framework.Hydra {
	t.Helper()
	hydraOnce.Do(func() {
		if testHydra, hydraErr = framework.StartHydra("..", "memory"); hydraErr != nil {
			return
		}
		tb := framework.HydraBackendFor(hydraBackendName, testHydra, testResync)
		hydraErr = controlPlane.CreateTokenBackend(context.Background(), tb)
	})
	if hydraErr != nil {
		t.Fatalf("hydra: %v", hydraErr)
	}
	return testHydra
}

func newHydraToken(ns, name string) *tokensv1alpha1.ApiToken {
	at := newApiToken(ns, name)
	at.Spec.BackendRef.Name = hydraBackendName
	return at
}

// hydraCreds reads the client ID and secret from the ApiToken's Secret, and
// remembers the secret for the leak search.
func hydraCreds(t *testing.T, ns, name string) backend.Credentials {
	t.Helper()
	creds, err := tryHydraCreds(t, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// tryHydraCreds is hydraCreds for a Secret that may not exist (yet).
func tryHydraCreds(t *testing.T, ns, name string) (backend.Credentials, error) {
	s := &corev1.Secret{}
	if err := k8s.Get(t.Context(), client2key(ns, name), s); err != nil {
		return backend.Credentials{}, err
	}
	creds := framework.CredentialsAt(s, tokensv1alpha1.DefaultClientIDKey, tokensv1alpha1.DefaultClientSecretKey)
	hydraSecrets.Store(creds.AuthToken.Reveal(), true)
	return creds, nil
}

// sameSecret compares two secrets without printing either.
func sameSecret(a, b backend.AuthToken) bool { return a.Reveal() == b.Reveal() }

func accepts(t *testing.T, h *framework.Hydra, creds backend.Credentials, scope string) bool {
	t.Helper()
	ok, err := h.Accepts(t.Context(), creds.AccountSID, creds.AuthToken, scope)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestHydraClientLifecycle(t *testing.T) {
	h := hydraServer(t)
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := createReady(t, newHydraToken(ns, "etl"))

	// The client ID is the UID; the Secret holds the client ID, its secret and
	// the token endpoint, and the secret works at the token endpoint.
	g.Expect(at.Status.AccountSID).To(Equal(string(at.UID)))
	s := getSecret(t, ns, "etl")
	g.Expect(s.Data).To(HaveKeyWithValue(tokensv1alpha1.DefaultTokenURLKey, []byte(h.TokenURL)))
	g.Expect(s.Data).NotTo(HaveKey(tokensv1alpha1.DefaultAccountSIDKey))
	creds := hydraCreds(t, ns, "etl")
	g.Expect(creds.AccountSID).To(Equal(string(at.UID)))
	g.Expect(accepts(t, h, creds, "reports:read")).To(BeTrue())
	g.Expect(accepts(t, h, creds, "reports:write")).To(BeFalse(), "a scope the ApiToken does not hold")
	client, _, err := h.Admin.Get(t.Context(), creds.AccountSID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(client.ExternalID).To(Equal(string(at.UID)))
	g.Expect(client.PrimaryContact).To(Equal("ops@example.com"))
	g.Expect(client.DeveloperEmails).To(Equal([]string{"dev@example.com"}))
	// Nothing is left pending once delivered.
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client2key(ns, "etl-pending"), &corev1.Secret{}))
	}, wait, tick).Should(BeTrue())

	// A reset: a new secret, the same client ID, the old secret refused at once.
	annotate(t, at, tokensv1alpha1.ResetAnnotation, "leak-1")
	var after backend.Credentials
	g.Eventually(func(g Gomega) {
		g.Expect(get(t, at).Status.LastHandledReset).To(Equal("leak-1"))
		after = hydraCreds(t, ns, "etl")
		g.Expect(sameSecret(after.AuthToken, creds.AuthToken)).To(BeFalse())
	}, wait, tick).Should(Succeed())
	g.Expect(after.AccountSID).To(Equal(creds.AccountSID))
	g.Expect(accepts(t, h, after, "reports:read")).To(BeTrue())
	g.Expect(accepts(t, h, creds, "reports:read")).To(BeFalse(), "the old secret is refused after a reset")

	// Disable refuses the client; enable restores the same secret.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = true })
	g.Eventually(func() bool { return accepts(t, h, after, "") }, wait, tick).Should(BeFalse())
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = false })
	g.Eventually(func() bool { return accepts(t, h, after, "") }, wait, tick).Should(BeTrue())

	// Deletion deletes the client and every Secret the operator kept.
	uid := get(t, at).UID
	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	found, err := h.Admin.FindByExternalID(t.Context(), string(uid))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(found).To(BeEmpty())
	g.Expect(accepts(t, h, after, "")).To(BeFalse())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client2key(ns, sourceSecretName(at)), &corev1.Secret{}))
	}, wait, tick).Should(BeTrue(), "the source Secret goes with the ApiToken")
}

func client2key(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

func TestHydraRotationWithOverlapIsASecondClient(t *testing.T) {
	h := hydraServer(t)
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := newHydraToken(ns, "overlap")
	at.Spec.Rotation.Overlap = &metav1.Duration{Duration: 4 * time.Second}
	at = createReady(t, at)
	old := hydraCreds(t, ns, "overlap")

	annotate(t, at, tokensv1alpha1.RotateAnnotation, "r1")
	var rotated *tokensv1alpha1.ApiToken
	g.Eventually(func(g Gomega) {
		rotated = get(t, at)
		g.Expect(rotated.Status.LastHandledRotate).To(Equal("r1"))
		g.Expect(hydraCreds(t, ns, "overlap").AccountSID).To(Equal(rotated.Status.AccountSID))
	}, wait, tick).Should(Succeed())
	g.Expect(rotated.Status.AccountSID).To(Equal(string(at.UID) + "-1"))
	g.Expect(rotated.Status.RetiringTokens).To(HaveLen(1))
	g.Expect(accepts(t, h, old, "reports:read")).To(BeTrue(), "the first client works during the overlap")
	g.Expect(accepts(t, h, hydraCreds(t, ns, "overlap"), "reports:read")).To(BeTrue())

	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, at).Status.RetiringTokens }, wait, tick).Should(BeEmpty())
	g.Expect(accepts(t, h, old, "")).To(BeFalse(), "the first client is deleted after the overlap")
	found, err := h.Admin.FindByExternalID(t.Context(), string(at.UID))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(found).To(HaveLen(1))
}

func TestHydraDriftIsReverted(t *testing.T) {
	h := hydraServer(t)
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := createReady(t, newHydraToken(ns, "drift"))
	sid := at.Status.AccountSID

	// Someone widens the scopes, renames the client, changes its contacts and
	// adds a grant type in Hydra.
	wider, name := []string{"actions:read", "admin:all", "reports:read"}, "renamed by hand"
	if _, err := h.Admin.UpdateClient(t.Context(), sid, backend.TokenPatch{Scopes: &wider, Name: &name, DeveloperEmails: &[]string{"intruder@example.com"}}); err != nil {
		t.Fatal(err)
	}
	patchHydraClient(t, h, sid, `[{"op":"replace","path":"/grant_types","value":["client_credentials","implicit"]}]`)
	g.Eventually(func(g Gomega) {
		tok, _, err := h.Admin.Get(t.Context(), sid, "")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tok.Scopes).To(Equal([]string{"actions:read", "reports:read"}))
		g.Expect(tok.Name).To(Equal("drift"))
		g.Expect(tok.DeveloperEmails).To(Equal([]string{"dev@example.com"}))
		g.Expect(tok.State).To(Equal(backend.StateEnabled), "grant types back to client_credentials alone")
	}, 3*testResync, tick).Should(Succeed())
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, "DriftReverted") }, wait, tick).Should(BeTrue())
}

// patchHydraClient edits a client in Hydra's admin API by hand (JSON Patch).
func patchHydraClient(t *testing.T, h *framework.Hydra, clientID, patch string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPatch, h.AdminURL+"/admin/clients/"+clientID, strings.NewReader(patch))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json-patch+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("patch client %s: HTTP %d", clientID, resp.StatusCode)
	}
}

func TestHydraSecretDeletedIsDeliveredAgainWithoutANewSecret(t *testing.T) {
	h := hydraServer(t)
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := createReady(t, newHydraToken(ns, "lost"))
	creds := hydraCreds(t, ns, "lost")

	g.Expect(k8s.Delete(t.Context(), getSecret(t, ns, "lost"))).To(Succeed())
	g.Eventually(func(g Gomega) {
		again, err := tryHydraCreds(t, ns, "lost")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sameSecret(again.AuthToken, creds.AuthToken)).To(BeTrue(), "the operator's source Secret keeps the secret Hydra never returns")
	}, wait, tick).Should(Succeed())
	g.Expect(accepts(t, h, creds, "")).To(BeTrue())
	g.Expect(hasEvent(t, at, corev1.EventTypeWarning, "SecretRegenerated")).To(BeFalse())
}

func TestHydraLeftoverSecretWrittenAheadIsDeliveredWhenLive(t *testing.T) {
	h := hydraServer(t)
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := createReady(t, newHydraToken(ns, "crash"))
	sid := at.Status.AccountSID
	before := hydraCreds(t, ns, "crash")

	// What a crash between the backend call and the delivery leaves: a secret
	// written ahead and set in Hydra, which nobody else holds.
	r := &ApiTokenReconciler{Client: k8s, APIReader: k8s, SecretWriter: k8s, Scheme: testScope}
	live, err := newClientSecret()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.writePending(t.Context(), at, pendingCredentials{key: "reset/crashed", sid: sid, secret: live})).To(Succeed())
	tok, _, err := h.Admin.Get(t.Context(), sid, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.Admin.SetSecret(t.Context(), sid, live, tok.Generation+1)).To(Succeed())
	g.Expect(accepts(t, h, before, "")).To(BeFalse())

	// The next pass (here: a spec change) finds it, asks Hydra, and delivers it.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "after the crash" })
	g.Eventually(func() bool { return sameSecret(hydraCreds(t, ns, "crash").AuthToken, live) }, wait, tick).Should(BeTrue())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client2key(ns, "crash-pending"), &corev1.Secret{}))
	}, wait, tick).Should(BeTrue())

	// One that Hydra refuses (never set) is discarded, and the Secret kept.
	dead, err := newClientSecret()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.writePending(t.Context(), at, pendingCredentials{key: "reset/never-sent", sid: sid, secret: dead})).To(Succeed())
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "discard" })
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client2key(ns, "crash-pending"), &corev1.Secret{}))
	}, wait, tick).Should(BeTrue())
	g.Expect(sameSecret(hydraCreds(t, ns, "crash").AuthToken, live)).To(BeTrue())
	g.Expect(accepts(t, h, hydraCreds(t, ns, "crash"), "")).To(BeTrue())
}

func TestHydraBackendHasNoCatalogAndPolicyIsTheRule(t *testing.T) {
	hydraServer(t)
	g := NewWithT(t)
	tb := &tokensv1alpha1.TokenBackend{}
	g.Expect(k8s.Get(t.Context(), client.ObjectKey{Name: hydraBackendName}, tb)).To(Succeed())
	ready := framework.ConditionTrue(tb.Status.Conditions, tokensv1alpha1.ConditionReady)
	g.Expect(ready).To(BeTrue())
	g.Expect(tb.Status.Catalog).To(BeNil())
	c := metaCondition(tb.Status.Conditions, tokensv1alpha1.ConditionReady)
	g.Expect(c.Reason).To(Equal(tokensv1alpha1.ReasonBackendConnected))
}

func metaCondition(conditions []metav1.Condition, typ string) metav1.Condition {
	for _, c := range conditions {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{Reason: fmt.Sprintf("no %s condition", typ)}
}

func TestHydraAdoptionSetsANewSecretOnce(t *testing.T) {
	h := hydraServer(t)
	g := NewWithT(t)
	tb := &tokensv1alpha1.TokenBackend{}
	g.Expect(k8s.Get(t.Context(), client.ObjectKey{Name: hydraBackendName}, tb)).To(Succeed())
	adopting := &tokensv1alpha1.TokenBackend{
		ObjectMeta: metav1.ObjectMeta{Name: "hydra-adopt"},
		Spec:       *tb.Spec.DeepCopy(),
	}
	adopting.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AdoptionNamespaces: &metav1.LabelSelector{}}
	g.Expect(controlPlane.CreateTokenBackend(t.Context(), adopting)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), adopting) })

	handMade, err := newClientSecret()
	g.Expect(err).NotTo(HaveOccurred())
	req := backend.CreateRequest{Name: "hand made", DeveloperEmails: []string{"ops@example.com"}, Scopes: []string{"reports:read"}, State: backend.StateEnabled}
	_, _, err = h.Admin.CreateClient(t.Context(), "hand-made-client", req, handMade)
	g.Expect(err).NotTo(HaveOccurred())

	ns := newNamespace(t, nil)
	at := newApiToken(ns, "adopted")
	at.Spec.BackendRef.Name = "hydra-adopt"
	at.Spec.Adopt = &tokensv1alpha1.Adoption{AccountSID: "hand-made-client"}
	at = createReady(t, at)
	g.Expect(at.Status.AccountSID).To(Equal("hand-made-client"))
	creds := hydraCreds(t, ns, "adopted")
	g.Expect(creds.AccountSID).To(Equal("hand-made-client"))
	g.Expect(accepts(t, h, creds, "reports:read")).To(BeTrue())
	g.Expect(accepts(t, h, backend.Credentials{AccountSID: "hand-made-client", AuthToken: handMade}, "")).To(BeFalse(),
		"Hydra never returns a secret: the adopted client gets a new one")
	tok, _, err := h.Admin.Get(t.Context(), "hand-made-client", "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.ExternalID).To(Equal(string(at.UID)))
	g.Expect(tok.Generation).To(Equal(int64(2)), "one new secret, set once")
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Adopted")).To(BeTrue())
}

func TestHydraResetRollsRestartTargetsOnce(t *testing.T) {
	hydraServer(t)
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	g.Expect(k8s.Create(t.Context(), framework.ConsumerDeployment(ns, "consumer", "rolled"))).To(Succeed())
	at := newHydraToken(ns, "rolled")
	at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{{Kind: tokensv1alpha1.RestartTargetDeployment, Name: "consumer"}}
	at = createReady(t, at)
	ref, _ := templateAnnotation(t, ns, "consumer")
	g.Expect(ref).To(BeEmpty(), "a new client rolls nothing")

	annotate(t, at, tokensv1alpha1.ResetAnnotation, "leak")
	g.Eventually(func() string { ref, _ := templateAnnotation(t, ns, "consumer"); return ref }, wait, tick).
		Should(Equal(at.Status.AccountSID + "/2"))
	_, rv := templateAnnotation(t, ns, "consumer")
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "spec only" })
	waitReady(t, at)
	framework.ExpectNoWrites(t, k8s, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "consumer", ResourceVersion: rv}},
		"a spec change rolled the restart target")
}

// Hydra has no catalog: the TokenBackend's policy alone decides, at admission
// and at reconcile.
func TestHydraPolicyIsTheRule(t *testing.T) {
	hydraServer(t)
	installAdmissionPolicy(t)
	g := NewWithT(t)
	tb := &tokensv1alpha1.TokenBackend{}
	g.Expect(k8s.Get(t.Context(), client.ObjectKey{Name: hydraBackendName}, tb)).To(Succeed())
	tenant := &tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{Name: "hydra-tenant"}, Spec: *tb.Spec.DeepCopy()}
	tenant.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: []string{"reports:*"}}
	g.Expect(controlPlane.CreateTokenBackend(t.Context(), tenant)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tenant) })

	ns := newNamespace(t, nil)
	refusal, err := framework.WaitUntilRefused(t.Context(), k8s, onBackend(newApiToken(ns, "probe"), "hydra-tenant", "actions:read"))
	if err != nil {
		t.Fatalf("the admission policy never refused: %v", err)
	}
	expectRefusedBy(t, refusal, metav1.StatusReasonInvalid, "scopes [actions:read] are not allowed by TokenBackend hydra-tenant")
	// Any scope the policy allows is accepted: there is no catalog to miss it.
	at := createReady(t, onBackend(newApiToken(ns, "allowed"), "hydra-tenant", "reports:anything-at-all"))
	g.Expect(at.Status.AccountSID).To(Equal(string(at.UID)))
}
