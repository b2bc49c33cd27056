package controllers

import (
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

// The credential lifecycle against envtest and tokenservice: the reset history,
// rotation in place and with overlap, the schedule, and restart targets.

func secretCreds(t *testing.T, ns, name string) backend.Credentials {
	t.Helper()
	return framework.CredentialsOf(getSecret(t, ns, name))
}

func annotate(t *testing.T, at *tokensv1alpha1.ApiToken, key, value string) {
	t.Helper()
	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		if at.Annotations == nil {
			at.Annotations = map[string]string{}
		}
		at.Annotations[key] = value
	})
}

func generationOf(t *testing.T, sid string) int64 {
	t.Helper()
	creds, err := tsAdmin.Credentials(t.Context(), sid)
	if err != nil {
		t.Fatalf("credentials of %s: %v", sid, err)
	}
	return creds.Generation
}

// A GitOps restore of an older reset value (A → B → A) resets nothing, and the
// Secret keeps the credentials that work.
func TestRestoredResetNonceNeverResetsAgain(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "gitops", nil)
	sid := at.Status.AccountSID

	for _, nonce := range []string{"A", "B"} {
		annotate(t, at, tokensv1alpha1.ResetAnnotation, nonce)
		g.Eventually(func() string { return get(t, at).Status.LastHandledReset }, wait, tick).Should(Equal(nonce))
	}
	g.Expect(generationOf(t, sid)).To(BeEquivalentTo(3))
	history := get(t, at).Status.History
	g.Expect(history).To(HaveLen(3))
	g.Expect(history[0].Type).To(Equal(tokensv1alpha1.CredentialsReset))
	g.Expect(history[0].Nonce).To(Equal("B"))
	g.Expect(history[0].Generation).To(BeEquivalentTo(3))
	g.Expect(history[2].Type).To(Equal(tokensv1alpha1.CredentialsCreated))

	annotate(t, at, tokensv1alpha1.ResetAnnotation, "A")
	g.Consistently(func(g Gomega) {
		g.Expect(generationOf(t, sid)).To(BeEquivalentTo(3), "no second reset for a restored nonce")
		g.Expect(verifyStatus(t, secretCreds(t, ns, "gitops"), "reports:read")).To(Equal(200), "the Secret holds working credentials")
	}, 2*framework.QuietPeriod, 200*time.Millisecond).Should(Succeed())
	g.Expect(get(t, at).Status.LastHandledReset).To(Equal("B"))
	g.Expect(get(t, at).Status.History).To(HaveLen(3))
}

func TestRotateAnnotationInPlace(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "inplace", nil)
	old := secretCreds(t, ns, "inplace")

	annotate(t, at, tokensv1alpha1.RotateAnnotation, "2026-q4")
	g.Eventually(func() string { return get(t, at).Status.LastHandledRotate }, wait, tick).Should(Equal("2026-q4"))
	g.Eventually(func() int { return verifyStatus(t, secretCreds(t, ns, "inplace"), "reports:read") }, wait, tick).Should(Equal(200))
	fresh := get(t, at)
	g.Expect(fresh.Status.AccountSID).To(Equal(old.AccountSID), "in place keeps the token")
	g.Expect(fresh.Status.History[0].Type).To(Equal(tokensv1alpha1.CredentialsRotated))
	g.Expect(fresh.Status.History[0].Generation).To(BeEquivalentTo(2))
	g.Expect(fresh.Status.RetiringTokens).To(BeEmpty())
	g.Expect(verifyStatus(t, old, "reports:read")).To(Equal(401), "in place revokes the old auth token")
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Rotated")).To(BeTrue())
}

func TestRotationWithOverlapKeepsBothValidThenRetires(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "overlap", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Rotation.Overlap = &metav1.Duration{Duration: 4 * time.Second}
	})
	old := secretCreds(t, ns, "overlap")

	annotate(t, at, tokensv1alpha1.RotateAnnotation, "q1")
	var rotated *tokensv1alpha1.ApiToken
	g.Eventually(func(g Gomega) {
		rotated = get(t, at)
		g.Expect(rotated.Status.LastHandledRotate).To(Equal("q1"))
		g.Expect(secretCreds(t, ns, "overlap").AccountSID).To(Equal(rotated.Status.AccountSID))
	}, wait, tick).Should(Succeed())
	g.Expect(rotated.Status.AccountSID).NotTo(Equal(old.AccountSID), "overlap makes a new token")
	g.Expect(rotated.Status.RetiringTokens).To(HaveLen(1))
	g.Expect(rotated.Status.RetiringTokens[0].AccountSID).To(Equal(old.AccountSID))
	g.Expect(verifyStatus(t, old, "reports:read")).To(Equal(200), "the old credentials still verify during the overlap")
	g.Expect(verifyStatus(t, secretCreds(t, ns, "overlap"), "reports:read")).To(Equal(200))
	g.Expect(backendTokens(t, at)).To(HaveLen(2))

	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, at).Status.RetiringTokens }, wait, tick).Should(BeEmpty())
	g.Expect(verifyStatus(t, old, "reports:read")).To(Equal(401), "the old token is deleted after the overlap")
	g.Expect(backendTokens(t, at)).To(HaveLen(1))
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Retired")).To(BeTrue())
}

func TestScheduledRotationHappensOncePerPeriod(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "scheduled", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Rotation.Period = &metav1.Duration{Duration: time.Hour}
	})
	g.Expect(at.Status.CredentialsIssuedAt).NotTo(BeNil())
	g.Expect(at.Status.NextRotationTime).NotTo(BeNil())
	g.Expect(at.Status.NextRotationTime.Sub(at.Status.CredentialsIssuedAt.Time)).To(Equal(time.Hour))

	// Pretend the credentials were issued two hours ago, then wake the controller.
	past := metav1.NewTime(time.Now().Add(-2 * time.Hour).Truncate(time.Second))
	patch := client.MergeFrom(at.DeepCopy())
	at.Status.CredentialsIssuedAt = &past
	at.Status.NextRotationTime = &metav1.Time{Time: past.Add(time.Hour)}
	g.Expect(k8s.Status().Patch(t.Context(), at, patch)).To(Succeed())
	annotate(t, at, "example.com/wake", "1")

	g.Eventually(func(g Gomega) {
		got := get(t, at)
		g.Expect(got.Status.History[0].Type).To(Equal(tokensv1alpha1.CredentialsRotated))
		g.Expect(got.Status.NextRotationTime.Time).To(BeTemporally(">", time.Now().Add(50*time.Minute)))
	}, wait, tick).Should(Succeed())
	annotate(t, at, "example.com/wake", "2")
	g.Consistently(func() int64 { return generationOf(t, at.Status.AccountSID) }, framework.QuietPeriod, 200*time.Millisecond).Should(BeEquivalentTo(2))
	g.Eventually(func() int { return verifyStatus(t, secretCreds(t, ns, "scheduled"), "reports:read") }, wait, tick).Should(Equal(200))
}

func TestDisablingEndsOverlapAndDeletionReleasesRetiringTokens(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "retire", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
	})
	old := secretCreds(t, ns, "retire")

	annotate(t, at, tokensv1alpha1.RotateAnnotation, "r1")
	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, at).Status.RetiringTokens }, wait, tick).Should(HaveLen(1))
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = true })
	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, at).Status.RetiringTokens }, wait, tick).Should(BeEmpty())
	g.Expect(verifyStatus(t, old, "reports:read")).To(Equal(401))
	waitReady(t, at)
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = false })
	waitReady(t, at)

	annotate(t, at, tokensv1alpha1.RotateAnnotation, "r2")
	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, at).Status.RetiringTokens }, wait, tick).Should(HaveLen(1))
	g.Expect(backendTokens(t, at)).To(HaveLen(2))
	deleteReleasesBackendTokens(t, at, "deletion releases the current and the retiring token")
}

func templateAnnotation(t *testing.T, ns, name string) (string, string) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Annotations[tokensv1alpha1.CredentialsAnnotation], d.ResourceVersion
}

func TestRestartTargetsRollOncePerCredentialChange(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	g.Expect(k8s.Create(t.Context(), framework.ConsumerDeployment(ns, "consumer", "restarts"))).To(Succeed())
	at := newApiToken(ns, "restarts")
	at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{
		{Kind: tokensv1alpha1.RestartTargetDeployment, Name: "consumer"},
		{Kind: tokensv1alpha1.RestartTargetDeployment, Name: "missing"},
	}
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)
	ref, _ := templateAnnotation(t, ns, "consumer")
	g.Expect(ref).To(BeEmpty(), "a new token rolls nothing")

	annotate(t, at, tokensv1alpha1.ResetAnnotation, "leak")
	g.Eventually(func() string { ref, _ := templateAnnotation(t, ns, "consumer"); return ref }, wait, tick).
		Should(Equal(at.Status.AccountSID + "/2"))
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, "RestartTargetNotFound") }, wait, tick).Should(BeTrue())
	_, rv := templateAnnotation(t, ns, "consumer")

	// A spec change and a resync roll nothing.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "spec only" })
	waitReady(t, at)
	framework.ExpectNoWrites(t, k8s, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "consumer", ResourceVersion: rv}},
		"a spec change rolled the restart target")

	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "consumer"}, d)).To(Succeed())
	managers := map[string]bool{}
	for _, f := range d.ManagedFields {
		managers[f.Manager] = true
	}
	g.Expect(managers).To(HaveKey(FieldManager), "the operator's writes carry its field manager")
}

// A reset whose answer was lost is replayed by the retry, and a replay carries
// no ETag: the pass reads the token, so that the status it writes holds the
// token's version and the next routine read is a 304, not a later status write.
func TestLostResetAnswerKeepsTheTokenVersion(t *testing.T) {
	g := NewWithT(t)
	_, at := readyToken(t, "lost-reset", nil)
	sid := at.Status.AccountSID
	lost := faultPlan.Add(1, faults.LostResponse, func(req *http.Request) bool {
		return req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/"+sid+"/reset")
	})
	annotate(t, at, tokensv1alpha1.ResetAnnotation, "lost")
	g.Eventually(func() string { return get(t, at).Status.LastHandledReset }, wait, tick).Should(Equal("lost"))
	g.Expect(lost.Fired()).To(Equal(1), "the reset's first answer was lost")
	g.Expect(generationOf(t, sid)).To(BeEquivalentTo(2), "one reset, replayed")
	g.Expect(backendTokens(t, at)).To(HaveLen(1))
	tok, _, err := tsAdmin.Get(t.Context(), sid, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.ETag).NotTo(BeEmpty())
	g.Expect(get(t, at).Status.BackendETag).To(Equal(tok.ETag), "the status holds the reset token's version")
}
