package controllers

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

const (
	wait = framework.WaitTimeout
	tick = framework.PollInterval
)

var (
	nsCounter     int
	nonLabelChars = regexp.MustCompile(`[^a-z0-9-]+`)
)

// newNamespace creates a namespace of the test's own.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	nsCounter++
	name := fmt.Sprintf("t%d-%s", nsCounter, nonLabelChars.ReplaceAllString(strings.ToLower(t.Name()), "-"))
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.TrimRight(name, "-")
	framework.CreateNamespace(t, k8s, name, labels)
	return name
}

func newApiToken(ns, name string) *tokensv1alpha1.ApiToken {
	return &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: tokensv1alpha1.ApiTokenSpec{
			Description:     "integration test",
			PrimaryContact:  "ops@example.com",
			DeveloperEmails: []string{"dev@example.com"},
			Scopes:          []string{"reports:read", "actions:read"},
		},
	}
}

func get(t *testing.T, at *tokensv1alpha1.ApiToken) *tokensv1alpha1.ApiToken {
	t.Helper()
	out := &tokensv1alpha1.ApiToken{}
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(at), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitCondition waits until the ApiToken's condition has the status (and reason,
// when given) for its current generation, and returns the ApiToken.
func waitCondition(t *testing.T, at *tokensv1alpha1.ApiToken, typ string, status metav1.ConditionStatus, reason string) *tokensv1alpha1.ApiToken {
	t.Helper()
	g := NewWithT(t)
	var out *tokensv1alpha1.ApiToken
	g.Eventually(func(g Gomega) {
		out = &tokensv1alpha1.ApiToken{}
		g.Expect(k8s.Get(t.Context(), client.ObjectKeyFromObject(at), out)).To(Succeed())
		g.Expect(out.Status.ObservedGeneration).To(Equal(out.Generation))
		c := meta.FindStatusCondition(out.Status.Conditions, typ)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), "condition %s: %s", typ, c.Message)
		if reason != "" {
			g.Expect(c.Reason).To(Equal(reason))
		}
	}, wait, tick).Should(Succeed())
	return out
}

func waitReady(t *testing.T, at *tokensv1alpha1.ApiToken) *tokensv1alpha1.ApiToken {
	t.Helper()
	return waitCondition(t, at, tokensv1alpha1.ConditionReady, metav1.ConditionTrue, "")
}

// createReady creates the ApiToken and waits until it is Ready.
func createReady(t *testing.T, at *tokensv1alpha1.ApiToken) *tokensv1alpha1.ApiToken {
	t.Helper()
	if err := k8s.Create(t.Context(), at); err != nil {
		t.Fatal(err)
	}
	return waitReady(t, at)
}

// readyToken is the start of most tests: an ApiToken named name (newApiToken,
// then mutate when given) in a namespace of the test's own, Ready.
func readyToken(t *testing.T, name string, mutate func(*tokensv1alpha1.ApiToken)) (ns string, at *tokensv1alpha1.ApiToken) {
	t.Helper()
	at = newApiToken(newNamespace(t, nil), name)
	if mutate != nil {
		mutate(at)
	}
	return at.Namespace, createReady(t, at)
}

func backendTokens(t *testing.T, at *tokensv1alpha1.ApiToken) []backend.Token {
	t.Helper()
	found, err := tsAdmin.FindByExternalID(t.Context(), string(get(t, at).UID))
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("get Secret %s/%s: %v", ns, name, err)
	}
	return s
}

// verifyStatus returns the HTTP status of /v1/verify for the credentials and scope.
func verifyStatus(t *testing.T, creds backend.Credentials, scope string) int {
	t.Helper()
	status := framework.VerifyStatus(t.Context(), tsURL, creds, scope)
	if status < 0 {
		t.Fatal("verify: no answer from tokenservice")
	}
	return status
}

func update(t *testing.T, at *tokensv1alpha1.ApiToken, mutate func(*tokensv1alpha1.ApiToken)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		current := get(t, at)
		mutate(current)
		return k8s.Update(t.Context(), current)
	}, wait, tick).Should(Succeed())
}

// deleteReleasesBackendTokens deletes the ApiToken, waits until it is gone and
// fails unless it left no backend token behind (current or retiring).
func deleteReleasesBackendTokens(t *testing.T, at *tokensv1alpha1.ApiToken, why string) {
	t.Helper()
	uid := get(t, at).UID
	if err := k8s.Delete(t.Context(), at); err != nil {
		t.Fatal(err)
	}
	waitGone(t, at)
	found, err := tsAdmin.FindByExternalID(t.Context(), string(uid))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Errorf("%s: %d backend tokens left", why, len(found))
	}
}

// createBackend creates a TokenBackend on the suite's tokenservice for the
// rest of the test, with the namespaces it allows (all when nil), without
// waiting for it.
func createBackend(t *testing.T, name string, allowed *metav1.LabelSelector) *tokensv1alpha1.TokenBackend {
	t.Helper()
	tb := newBackend(name, allowed)
	if err := k8s.Create(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	return tb
}

// waitGone waits until the object no longer exists.
func waitGone(t *testing.T, obj client.Object) {
	t.Helper()
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object)))
	}, wait, tick).Should(BeTrue())
}

func hasEvent(t *testing.T, at *tokensv1alpha1.ApiToken, eventType, reason string) bool {
	for _, e := range eventsFor(t, at) {
		if e.Type == eventType && e.Reason == reason {
			return true
		}
	}
	return false
}

func TestCreateDeliversCredentials(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "reporting-etl", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Secret.Labels = map[string]tokensv1alpha1.LabelValue{"team": "analytics"}
		at.Spec.Secret.Annotations = map[string]string{"note": "x"}
	})

	g.Expect(at.Finalizers).To(ContainElement(tokensv1alpha1.Finalizer))
	g.Expect(at.Status.AccountSID).To(HavePrefix("TK"))
	g.Expect(at.Status.State).To(Equal(tokensv1alpha1.TokenStateEnabled))
	g.Expect(at.Status.APIVersion).To(BeEquivalentTo(16))
	g.Expect(at.Status.SecretName).To(Equal("reporting-etl"))
	for _, typ := range []string{tokensv1alpha1.ConditionReconciling, tokensv1alpha1.ConditionStalled} {
		g.Expect(meta.IsStatusConditionFalse(at.Status.Conditions, typ)).To(BeTrue(), typ)
	}

	tokens := backendTokens(t, at)
	g.Expect(tokens).To(HaveLen(1))
	tok := tokens[0]
	g.Expect(tok.SID).To(Equal(at.Status.AccountSID))
	g.Expect(tok.Name).To(Equal("reporting-etl"), "displayName defaults to metadata.name")
	g.Expect(tok.Scopes).To(Equal([]string{"actions:read", "reports:read"}))
	g.Expect(tok.DeveloperEmails).To(Equal([]string{"dev@example.com"}))
	g.Expect(tok.PrimaryContact).To(Equal("ops@example.com"))

	s := getSecret(t, ns, "reporting-etl")
	g.Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
	g.Expect(s.Labels).To(HaveKeyWithValue(tokensv1alpha1.ManagedByLabel, tokensv1alpha1.ManagedByValue))
	g.Expect(s.Labels).To(HaveKeyWithValue(tokensv1alpha1.ApiTokenLabel, "reporting-etl"))
	g.Expect(s.Labels).To(HaveKeyWithValue("team", "analytics"))
	g.Expect(s.Annotations).To(HaveKeyWithValue("note", "x"))
	ref := metav1.GetControllerOf(s)
	g.Expect(ref).NotTo(BeNil())
	g.Expect(ref.UID).To(Equal(at.UID))
	g.Expect(ref.Kind).To(Equal("ApiToken"))

	creds := framework.CredentialsOf(s)
	g.Expect(creds.AccountSID).To(Equal(at.Status.AccountSID))
	for _, scope := range []string{"reports:read", "actions:read"} {
		g.Expect(verifyStatus(t, creds, scope)).To(Equal(200), scope)
	}
	g.Expect(verifyStatus(t, creds, "reports:write")).To(Equal(403))

	// The auth token appears nowhere but in the Secret.
	statusText := fmt.Sprintf("%+v", at.Status)
	g.Expect(statusText).NotTo(ContainSubstring(creds.AuthToken.Reveal()))
	// A first create writes no event (an Event per token cost the API server a
	// third more work per token in make bench): status.history records it.
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Created")).To(BeFalse())
	g.Expect(at.Status.History).To(HaveLen(1))
	g.Expect(at.Status.History[0].Type).To(Equal(tokensv1alpha1.CredentialsCreated))
	g.Expect(kstatusOf(t, at)).To(Equal(kstatus.CurrentStatus), "kstatus sees a Ready ApiToken as Current")

	// Its writes name the operator in managedFields: the finalizer, the status,
	// the Secret.
	g.Expect(managersOf(at.ManagedFields)).To(HaveKeyWithValue(FieldManager, ContainElements("", "status")))
	g.Expect(managersOf(s.ManagedFields)).To(HaveKey(FieldManager))
}

// managersOf maps each field manager to the subresources it wrote.
func managersOf(entries []metav1.ManagedFieldsEntry) map[string][]string {
	managers := map[string][]string{}
	for _, e := range entries {
		managers[e.Manager] = append(managers[e.Manager], e.Subresource)
	}
	return managers
}

// kstatusOf computes the object's status the way kstatus (sigs.k8s.io/cli-utils)
// does for GitOps tools and kubectl apply --wait.
func kstatusOf(t *testing.T, at *tokensv1alpha1.ApiToken) kstatus.Status {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(at)
	if err != nil {
		t.Fatal(err)
	}
	res, err := kstatus.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}

func TestBasicAuthSecretAndCustomKeys(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	basic := newApiToken(ns, "basic")
	basic.Spec.Secret = tokensv1alpha1.SecretTemplate{Name: "basic-creds", Type: corev1.SecretTypeBasicAuth}
	custom := newApiToken(ns, "custom")
	custom.Spec.Secret = tokensv1alpha1.SecretTemplate{AccountSIDKey: "USERNAME", AuthTokenKey: "PASSWORD"}
	custom.Spec.DisplayName = "Custom Display"
	g.Expect(k8s.Create(t.Context(), basic)).To(Succeed())
	g.Expect(k8s.Create(t.Context(), custom)).To(Succeed())
	waitReady(t, basic)
	waitReady(t, custom)

	s := getSecret(t, ns, "basic-creds")
	g.Expect(s.Type).To(Equal(corev1.SecretTypeBasicAuth))
	g.Expect(verifyStatus(t, framework.CredentialsAt(s, corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey), "reports:read")).To(Equal(200))

	s = getSecret(t, ns, "custom")
	g.Expect(s.Data).To(HaveKey("USERNAME"))
	g.Expect(verifyStatus(t, framework.CredentialsAt(s, "USERNAME", "PASSWORD"), "reports:read")).To(Equal(200))
	g.Expect(backendTokens(t, custom)[0].Name).To(Equal("Custom Display"))
}

func TestSpecChangesReachTheBackend(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "updates", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.APIVersion = ptr.To[int32](13)
	})
	sidBefore := get(t, at).Status.AccountSID
	s := getSecret(t, ns, "updates")

	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Scopes = []string{"reports:read", "reports:write", "deals:read"}
		at.Spec.Description = "changed"
		at.Spec.DisplayName = "Renamed"
		at.Spec.APIVersion = ptr.To[int32](15)
		at.Spec.DeveloperEmails = nil
		at.Spec.PrimaryContact = "admin@example.com"
	})
	after := waitReady(t, at)
	g.Expect(after.Status.AccountSID).To(Equal(sidBefore))
	g.Expect(after.Status.APIVersion).To(BeEquivalentTo(15))
	tok := backendTokens(t, at)[0]
	g.Expect(tok.Scopes).To(Equal([]string{"deals:read", "reports:read", "reports:write"}))
	g.Expect(tok.Description).To(Equal("changed"))
	g.Expect(tok.Name).To(Equal("Renamed"))
	g.Expect(tok.APIVersion).To(Equal(15))
	g.Expect(tok.DeveloperEmails).To(BeEmpty())
	g.Expect(tok.PrimaryContact).To(Equal("admin@example.com"))

	creds := framework.CredentialsOf(s)
	g.Expect(verifyStatus(t, creds, "deals:read")).To(Equal(200))
	g.Expect(verifyStatus(t, creds, "actions:read")).To(Equal(403))
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Updated")).To(BeTrue())

	// Admission: apiVersion may only rise.
	current := get(t, at)
	current.Spec.APIVersion = ptr.To[int32](14)
	err := k8s.Update(t.Context(), current)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "downgrade: %v", err)
	g.Expect(err.Error()).To(ContainSubstring("apiVersion may only rise"))
}

func TestDriftIsRevertedWithinOneResync(t *testing.T) {
	g := NewWithT(t)
	_, at := readyToken(t, "drift", nil)
	sid := at.Status.AccountSID

	// Someone widens the scopes in the backend by hand.
	wide := []string{"reports:read", "actions:read", "invoices:write"}
	_, err := tsAdmin.Update(t.Context(), sid, "", backend.TokenPatch{Scopes: &wide})
	g.Expect(err).NotTo(HaveOccurred())
	start := time.Now()
	g.Eventually(func() []string {
		tok, _, _ := tsAdmin.Get(t.Context(), sid, "")
		return tok.Scopes
	}, 2*testResync+wait, tick).Should(Equal([]string{"actions:read", "reports:read"}))
	g.Expect(time.Since(start)).To(BeNumerically("<", 2*testResync), "reverted within one resync (plus jitter)")
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, "DriftReverted") }, wait, tick).Should(BeTrue())

	// Re-enabled by hand while the spec says disabled: reverted too.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = true })
	g.Eventually(func() string { return string(get(t, at).Status.State) }, wait, tick).Should(Equal("Disabled"))
	enabled := backend.StateEnabled
	_, err = tsAdmin.Update(t.Context(), sid, "", backend.TokenPatch{State: &enabled})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() backend.State {
		tok, _, _ := tsAdmin.Get(t.Context(), sid, "")
		return tok.State
	}, 2*testResync+wait, tick).Should(Equal(backend.StateDisabled))
}

func TestResetHappensOncePerNonce(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "reset", nil)
	old := framework.CredentialsOf(getSecret(t, ns, "reset"))

	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "incident-42"}
	})
	g.Eventually(func() string { return get(t, at).Status.LastHandledReset }, wait, tick).Should(Equal("incident-42"))
	var fresh backend.Credentials
	g.Eventually(func() string {
		fresh = framework.CredentialsOf(getSecret(t, ns, "reset"))
		return fresh.AuthToken.Reveal()
	}, wait, tick).ShouldNot(Equal(old.AuthToken.Reveal()))
	g.Expect(verifyStatus(t, old, "reports:read")).To(Equal(401))
	g.Expect(verifyStatus(t, fresh, "reports:read")).To(Equal(200))
	g.Expect(get(t, at).Status.LastResetTime).NotTo(BeNil())
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Reset")).To(BeTrue())

	// The same nonce, other edits, and removing the annotation reset nothing.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "edit after reset" })
	waitReady(t, at)
	update(t, at, func(at *tokensv1alpha1.ApiToken) { delete(at.Annotations, tokensv1alpha1.ResetAnnotation) })
	waitReady(t, at)
	g.Consistently(func() int64 { return generationOf(t, fresh.AccountSID) }, framework.QuietPeriod, tick).Should(BeEquivalentTo(2))

	// A new nonce resets again, exactly once.
	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "rotation-2"}
	})
	g.Eventually(func() string { return get(t, at).Status.LastHandledReset }, wait, tick).Should(Equal("rotation-2"))
	g.Consistently(func() int64 { return generationOf(t, fresh.AccountSID) }, framework.QuietPeriod, tick).Should(BeEquivalentTo(3))
	g.Eventually(func() int {
		return verifyStatus(t, framework.CredentialsOf(getSecret(t, ns, "reset")), "reports:read")
	}, wait, tick).Should(Equal(200))
}

func TestResetAnnotationAtCreationIsRecordedWithoutReset(t *testing.T) {
	g := NewWithT(t)
	_, at := readyToken(t, "born-with-nonce", func(at *tokensv1alpha1.ApiToken) {
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "initial"}
	})
	g.Expect(at.Status.LastHandledReset).To(Equal("initial"))
	g.Expect(at.Status.LastResetTime).To(BeNil())
	creds, err := tsAdmin.Credentials(t.Context(), at.Status.AccountSID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(creds.Generation).To(BeEquivalentTo(1))
}

func TestDisableKeepsSecretAndEnableRestores(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "toggle", nil)
	creds := framework.CredentialsOf(getSecret(t, ns, "toggle"))

	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = true })
	g.Eventually(func() int { return verifyStatus(t, creds, "reports:read") }, wait, tick).Should(Equal(401))
	at = waitReady(t, at)
	g.Expect(at.Status.State).To(Equal(tokensv1alpha1.TokenStateDisabled))
	g.Expect(getSecret(t, ns, "toggle").Data["authToken"]).To(Equal([]byte(creds.AuthToken.Reveal())))
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Disabled")).To(BeTrue())

	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = false })
	g.Eventually(func() int { return verifyStatus(t, creds, "reports:read") }, wait, tick).Should(Equal(200))
	g.Expect(waitReady(t, at).Status.State).To(Equal(tokensv1alpha1.TokenStateEnabled))
}
