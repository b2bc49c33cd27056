package controllers

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
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

// Secret templates (docs/design.md, "Secret templates"): rendered at delivery,
// re-rendered without a backend call, one roll per template change.

// countedBackend is a TokenBackend of the test's own, reached through a proxy
// that counts the token calls (other tests' readers use other backends), with a
// resync long enough that no routine read falls within the test.
func countedBackend(t *testing.T, name string) *atomic.Int64 {
	t.Helper()
	target, err := url.Parse(tsURL)
	if err != nil {
		t.Fatal(err)
	}
	calls := &atomic.Int64{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/tokens") {
			calls.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(server.Close)
	tb := framework.TokenBackendFor(name, server.URL, time.Hour)
	if err := k8s.Create(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	return calls
}

func TestTemplateChangeRendersAgainWithoutABackendCall(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	g.Expect(k8s.Create(t.Context(), framework.ConsumerDeployment(ns, "consumer", "templated"))).To(Succeed())
	calls := countedBackend(t, "templates-counted")
	at := newApiToken(ns, "templated")
	at.Spec.BackendRef.Name = "templates-counted"
	at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{
		"DATABASE_URL": "https://{{ .AccountSID }}:{{ .AuthToken }}@db.example.com",
	}}
	at.Spec.Secret.Formats = []tokensv1alpha1.SecretFormat{tokensv1alpha1.SecretFormatEnv}
	at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{{Kind: tokensv1alpha1.RestartTargetDeployment, Name: "consumer"}}
	at = createReady(t, at)

	if calls.Load() == 0 {
		t.Fatal("the proxy counted no call: the ApiToken does not use the counted backend")
	}
	s := getSecret(t, ns, "templated")
	creds := backend.Credentials{AccountSID: at.Status.AccountSID}
	url := string(s.Data["DATABASE_URL"])
	g.Expect(url).To(HavePrefix("https://" + at.Status.AccountSID + ":"))
	creds.AuthToken = backend.AuthToken(strings.TrimSuffix(strings.TrimPrefix(url, "https://"+at.Status.AccountSID+":"), "@db.example.com"))
	g.Expect(verifyStatus(t, creds, "reports:read")).To(Equal(200), "the templated key holds the live token")
	g.Expect(string(s.Data[".env"])).To(ContainSubstring("AUTH_TOKEN=" + creds.AuthToken.Reveal() + "\n"))
	g.Expect(s.Data).NotTo(HaveKey("authToken"), "no default key is kept when data is set")
	ref, _ := templateAnnotation(t, ns, "consumer")
	g.Expect(ref).To(BeEmpty(), "a new token rolls nothing")

	before := calls.Load()
	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Secret.Template.Data["DATABASE_URL"] = "postgres://{{ .AccountSID }}:{{ .AuthToken | urlquery }}@db.example.com/app"
		at.Spec.Secret.Template.Keep = []tokensv1alpha1.KeptKey{tokensv1alpha1.KeepAccountSID}
	})
	g.Eventually(func() string { return string(getSecret(t, ns, "templated").Data["DATABASE_URL"]) }, wait, tick).
		Should(HavePrefix("postgres://"))
	s = getSecret(t, ns, "templated")
	g.Expect(string(s.Data["accountSid"])).To(Equal(at.Status.AccountSID), "keep writes the default key")
	g.Expect(string(s.Data["DATABASE_URL"])).To(ContainSubstring(creds.AuthToken.Reveal()), "the same credentials, rendered anew")
	g.Eventually(func() string { ref, _ := templateAnnotation(t, ns, "consumer"); return ref }, wait, tick).
		Should(HavePrefix(at.Status.AccountSID+"/1/"), "the template change rolls the target once")
	ref, rv := templateAnnotation(t, ns, "consumer")
	waitReady(t, at)
	g.Expect(calls.Load()).To(Equal(before), "a template change costs no backend call")

	// A resync and an unrelated change roll nothing more.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "spec only" })
	waitReady(t, at)
	framework.ExpectNoWrites(t, k8s, deploymentAt(ns, "consumer", rv), "a spec change rolled the restart target again")
	again, _ := templateAnnotation(t, ns, "consumer")
	g.Expect(again).To(Equal(ref))
}

func TestBrokenTemplateStallsAndLeavesTheSecret(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "broken-template", nil)
	before := getSecret(t, ns, "broken-template")
	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"url": "{{ .AccountSID }}:{{ .Password }}"}}
	})
	at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonTemplateError)
	stalled := conditionOf(at, tokensv1alpha1.ConditionStalled)
	g.Expect(stalled.Message).To(ContainSubstring(`spec.secret.template.data["url"]: url:1:21`))
	g.Expect(stalled.Message).NotTo(ContainSubstring(at.Status.AccountSID), "no rendered data")
	g.Expect(getSecret(t, ns, "broken-template").Data).To(Equal(before.Data), "the Secret stays as it was")
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonTemplateError) }, wait, tick).Should(BeTrue())

	// Fixed, it renders; the previous layout's keys go.
	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Secret.Template.Data["url"] = "{{ .AccountSID }}"
	})
	waitReady(t, at)
	g.Eventually(func() map[string][]byte { return getSecret(t, ns, "broken-template").Data }, wait, tick).
		Should(Equal(map[string][]byte{"url": []byte(at.Status.AccountSID)}))
	g.Expect(getSecret(t, ns, sourceSecretName(at)).Type).To(Equal(sourceSecretType))

	// Without the template, the default keys come back and the source Secret goes.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Template = nil })
	g.Eventually(func() []string { return slices.Collect(maps.Keys(getSecret(t, ns, "broken-template").Data)) }, wait, tick).
		Should(ConsistOf("accountSid", "authToken"))
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: sourceSecretName(at)}, &corev1.Secret{}))
	}, wait, tick).Should(BeTrue(), "the source Secret of a removed template is deleted")
	g.Expect(get(t, at).Status.SecretDigest).To(BeEmpty())
}

func conditionOf(at *tokensv1alpha1.ApiToken, typ string) metav1.Condition {
	for _, c := range at.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{}
}

func deploymentAt(ns, name, resourceVersion string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: resourceVersion}}
}

// The source Secret is trusted only as the operator wrote it, and goes with the
// ApiToken.
func TestSourceSecretIsNeverTrustedWhenEditedAndGoesWithTheApiToken(t *testing.T) {
	g := NewWithT(t)
	calls := countedBackend(t, "sources-counted")
	ns, at := readyToken(t, "sourced", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.BackendRef.Name = "sources-counted"
		at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"token": "{{ .AuthToken }}"}}
	})
	source := getSecret(t, ns, sourceSecretName(at))
	g.Expect(source.Type).To(Equal(sourceSecretType))
	real := string(source.Data["authToken"])
	g.Expect(string(getSecret(t, ns, "sourced").Data["token"])).To(Equal(real))

	source.Data["authToken"] = []byte("forged-by-a-tenant")
	g.Expect(k8s.Update(t.Context(), source)).To(Succeed())
	before := calls.Load()
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Template.Data["token"] = "Bearer {{ .AuthToken }}" })
	g.Eventually(func() string { return string(getSecret(t, ns, "sourced").Data["token"]) }, wait, tick).
		Should(Equal("Bearer "+real), "rendered from the backend's credentials, not the edited source")
	g.Expect(calls.Load()).To(BeNumerically(">", before), "an edited source costs a backend read")
	g.Eventually(func() string { return string(getSecret(t, ns, sourceSecretName(at)).Data["authToken"]) }, wait, tick).Should(Equal(real))

	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: sourceSecretName(at)}, &corev1.Secret{}))
	}, wait, tick).Should(BeTrue(), "the source Secret is deleted with the ApiToken")
}

// A reset while the template is broken is carried out (incident response is
// never blocked) and its credentials are kept in the source Secret, so that the
// fixed template delivers them without another reset; a scheduled rotation
// waits for the template.
func TestResetWhileTheTemplateIsBrokenKeepsItsCredentials(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "broken-reset", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"token": "{{ .AuthToken }}"}}
	})
	sid := at.Status.AccountSID
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Template.Data["token"] = "{{ .Nope }}" })
	waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonTemplateError)

	annotate(t, at, tokensv1alpha1.ResetAnnotation, "leak-while-broken")
	g.Eventually(func() string { return get(t, at).Status.LastHandledReset }, wait, tick).Should(Equal("leak-while-broken"))
	g.Eventually(func() string {
		return getSecret(t, ns, sourceSecretName(at)).Annotations[credentialsGenerationAnnotation]
	}, wait, tick).
		Should(Equal("2"), "the reset's credentials are kept in the source Secret")
	fresh := backend.Credentials{AccountSID: sid, AuthToken: backend.AuthToken(getSecret(t, ns, sourceSecretName(at)).Data["authToken"])}
	g.Expect(verifyStatus(t, fresh, "reports:read")).To(Equal(200))

	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Template.Data["token"] = "{{ .AuthToken }}" })
	waitReady(t, at)
	g.Eventually(func() string { return string(getSecret(t, ns, "broken-reset").Data["token"]) }, wait, tick).
		Should(Equal(fresh.AuthToken.Reveal()), "the fixed template delivers the reset's credentials")
	c, err := tsAdmin.Credentials(t.Context(), sid)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Generation).To(Equal(int64(2)), "one reset, not replayed into another")
}
