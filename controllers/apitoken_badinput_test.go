package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

func TestBackendRejectionStallsWithoutRetryStorm(t *testing.T) {
	cases := map[string]struct {
		mutate func(*tokensv1alpha1.ApiToken)
		want   string
	}{
		"unknown scope":        {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "nosuch:read"} }, "nosuch:read"},
		"unknown contact":      {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "stranger@example.com" }, "stranger@example.com"},
		"version above latest": {func(at *tokensv1alpha1.ApiToken) { at.Spec.APIVersion = ptr.To[int32](99) }, "apiVersion"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t, nil)
			at := newApiToken(ns, "rejected")
			tc.mutate(at)
			g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
			at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonBackendRejected)
			c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled)
			g.Expect(c.Message).To(ContainSubstring(tc.want))
			g.Expect(backendTokens(t, at)).To(BeEmpty())
			g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonBackendRejected) }, wait, tick).Should(BeTrue())

			// No retry storm: the status stops changing and no create reaches the
			// backend again (counted from the operator's own metric).
			creates := backendCalls("create")
			framework.ExpectNoWrites(t, k8s, get(t, at), "a stalled ApiToken is written again")
			g.Expect(backendCalls("create")).To(Equal(creates), "the backend was asked to create again")

			// Fixing the spec recovers.
			update(t, at, func(at *tokensv1alpha1.ApiToken) {
				at.Spec.Scopes = []string{"reports:read"}
				at.Spec.PrimaryContact = "ops@example.com"
				at.Spec.APIVersion = nil
			})
			waitReady(t, at)
			g.Expect(backendTokens(t, at)).To(HaveLen(1))
		})
	}
}

func TestUnknownBackendAndNamespaceNotAllowed(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := newApiToken(ns, "nobackend")
	at.Spec.BackendRef.Name = "does-not-exist"
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonBackendNotFound)

	restricted := createBackend(t, "restricted", &metav1.LabelSelector{MatchLabels: map[string]string{"tokens": "allowed"}})
	denied := onBackend(newApiToken(ns, "denied"), restricted.Name, "reports:read", "actions:read")
	g.Expect(k8s.Create(t.Context(), denied)).To(Succeed())
	denied = waitCondition(t, denied, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonNamespaceNotAllowed)
	g.Expect(backendTokens(t, denied)).To(BeEmpty())

	createReady(t, onBackend(newApiToken(newNamespace(t, map[string]string{"tokens": "allowed"}), "allowed"), restricted.Name, "reports:read", "actions:read"))

	// Creating the missing backend re-reconciles the ApiToken that waited for it.
	createBackend(t, "does-not-exist", nil)
	waitReady(t, at)

	// Deleting ApiTokens that never reached a backend completes.
	g.Expect(k8s.Delete(t.Context(), denied)).To(Succeed())
	waitGone(t, denied)
}

func TestLostCreateResponseAdoptsTheToken(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := newApiToken(ns, "lost")
	at.Spec.DisplayName = "lost-create-responses"
	// Lose the response of the first create and of its replay.
	lost := faultPlan.Add(2, faults.LostResponse, faults.CreateOf(at.Spec.DisplayName))
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)
	g.Expect(lost.Fired()).To(Equal(2), "both create responses were lost")
	tokens := backendTokens(t, at)
	g.Expect(tokens).To(HaveLen(1), "exactly one backend token after lost responses")
	g.Expect(tokens[0].SID).To(Equal(at.Status.AccountSID))
	g.Expect(verifyStatus(t, framework.CredentialsOf(getSecret(t, ns, "lost")), "reports:read")).To(Equal(200))
}

func TestAdmissionRejectsInvalidSpecs(t *testing.T) {
	long := strings.Repeat("x", 101)
	cases := map[string]struct {
		mutate func(*tokensv1alpha1.ApiToken)
		want   string
	}{
		"displayName too long":            {func(at *tokensv1alpha1.ApiToken) { at.Spec.DisplayName = long }, "displayName"},
		"description too long":            {func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = strings.Repeat("d", 1025) }, "description"},
		"malformed contact":               {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "not-an-email" }, "primaryContact"},
		"missing contact":                 {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "" }, "primaryContact"},
		"malformed dev e-mail":            {func(at *tokensv1alpha1.ApiToken) { at.Spec.DeveloperEmails = []string{"dev@"} }, "developerEmails"},
		"scope pattern":                   {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"Reports:Read"} }, "scopes"},
		"scope without colon":             {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports"} }, "scopes"},
		"duplicate scopes":                {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"a:b", "a:b"} }, "scopes"},
		"too many scopes":                 {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = manyScopes(257) }, "scopes"},
		"too many e-mails":                {func(at *tokensv1alpha1.ApiToken) { at.Spec.DeveloperEmails = manyEmails(51) }, "developerEmails"},
		"unknown policy":                  {func(at *tokensv1alpha1.ApiToken) { at.Spec.DeletionPolicy = "Keep" }, "deletionPolicy"},
		"unknown secret type":             {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Type = "kubernetes.io/tls" }, "type"},
		"same secret keys":                {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.AuthTokenKey = "accountSid" }, "must differ"},
		"bad secret key":                  {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.AuthTokenKey = "a/b" }, "authTokenKey"},
		"bad secret name":                 {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Name = "Not_A_Name" }, "secret.name"},
		"apiVersion zero":                 {func(at *tokensv1alpha1.ApiToken) { at.Spec.APIVersion = ptr.To[int32](0) }, "apiVersion"},
		"empty displayName":               {func(at *tokensv1alpha1.ApiToken) { at.Spec.DisplayName = "" }, ""},
		"name too long for a label value": {func(at *tokensv1alpha1.ApiToken) { at.Name = strings.Repeat("n", 64) }, "at most 63 characters"},
		"63-character name":               {func(at *tokensv1alpha1.ApiToken) { at.Name = strings.Repeat("n", 63) }, ""},
		"bad Secret label key": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Labels = map[string]tokensv1alpha1.LabelValue{"bad key": "v"}
		}, "valid label key"},
		"bad Secret label value": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Labels = map[string]tokensv1alpha1.LabelValue{"team": "a b"}
		}, "labels"},
		"Secret label value too long": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Labels = map[string]tokensv1alpha1.LabelValue{"team": tokensv1alpha1.LabelValue(strings.Repeat("v", 64))}
		}, "labels"},
		"prefixed Secret label": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Labels = map[string]tokensv1alpha1.LabelValue{"example.com/team": "a.b_c-d"}
		}, ""},
		"bad Secret annotation key": {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Annotations = map[string]string{"-bad": "x"} }, "valid annotation key"},
		"bad template key": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"a/b": "{{ .AccountSID }}"}}
		}, "valid Secret data key"},
		"template key a format writes": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{".env": "x"}}
			at.Spec.Secret.Formats = []tokensv1alpha1.SecretFormat{tokensv1alpha1.SecretFormatEnv}
		}, "must not name a key that secret.formats writes"},
		"template key a kept key": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.AuthTokenKey = "password"
			at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"password": "x"}, Keep: []tokensv1alpha1.KeptKey{tokensv1alpha1.KeepAuthToken}}
		}, "must not name a key that secret.template.keep keeps"},
		"template too long": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"k": strings.Repeat("x", 16385)}}
		}, "at most 16384 characters"},
		"unknown format": {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Formats = []tokensv1alpha1.SecretFormat{"YAML"} }, "formats"},
		"template key starting with ..": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"..data": "x"}}
		}, "valid Secret data key"},
		"basic-auth template naming password": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Type = corev1.SecretTypeBasicAuth
			at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"password": "Bearer {{ .AuthToken }}"}}
		}, "must not name username or password"},
		"a key name a format writes": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.AccountSIDKey = ".env"
			at.Spec.Secret.Formats = []tokensv1alpha1.SecretFormat{tokensv1alpha1.SecretFormatEnv}
		}, "must not name a key that secret.formats writes"},
		"a template and every format": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.Template = &tokensv1alpha1.SecretDataTemplate{Data: map[string]string{"url": "{{ .AccountSID }}"}, Keep: []tokensv1alpha1.KeptKey{tokensv1alpha1.KeepAccountSID}}
			at.Spec.Secret.Formats = []tokensv1alpha1.SecretFormat{tokensv1alpha1.SecretFormatEnv, tokensv1alpha1.SecretFormatNetrc, tokensv1alpha1.SecretFormatJSON}
		}, ""},
		"rotation period below 1h": {func(at *tokensv1alpha1.ApiToken) { at.Spec.Rotation.Period = &metav1.Duration{Duration: time.Minute} }, "at least 1h"},
		"rotation overlap above 168h": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Rotation.Overlap = &metav1.Duration{Duration: 200 * time.Hour}
		}, "between 0s and 168h"},
		"unknown restart target kind": {func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{{Kind: "Job", Name: "x"}}
		}, "kind"},
	}
	ns := newNamespace(t, nil)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			at := newApiToken(ns, "invalid")
			tc.mutate(at)
			if tc.want == "" || len(at.Name) > 20 {
				// A namespace of its own: a valid ApiToken is created and deleted, and
				// its finalizer keeps the name taken for a moment.
				at.Namespace = newNamespace(t, nil)
			}
			err := k8s.Create(t.Context(), at)
			if tc.want == "" { // omitted optional fields are valid
				if err != nil {
					t.Fatalf("valid spec rejected: %v", err)
				}
				_ = k8s.Delete(t.Context(), at)
				return
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want an Invalid error naming %q", err, tc.want)
			}
		})
	}
	list := &tokensv1alpha1.ApiTokenList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, at := range list.Items {
		if slices.Contains([]string{"invalid"}, at.Name) && at.DeletionTimestamp.IsZero() {
			t.Errorf("an invalid ApiToken was stored: %s", at.Name)
		}
	}
}

func manyScopes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("cat%d:read", i)
	}
	return out
}

func manyEmails(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("dev%d@example.com", i)
	}
	return out
}

// Changes of a live ApiToken that admission refuses: moving it to another
// backend, and an apiVersion below the effective one when the field was unset.
func TestAdmissionRefusesBackendMoveAndVersionBelowEffective(t *testing.T) {
	g := NewWithT(t)
	_, at := readyToken(t, "immutable", nil)
	g.Expect(at.Status.APIVersion).To(BeEquivalentTo(16))

	moved := at.DeepCopy()
	moved.Spec.BackendRef.Name = "another"
	err := k8s.Update(t.Context(), moved)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "backendRef change: %v", err)
	g.Expect(err.Error()).To(ContainSubstring("backendRef is immutable"))

	older := get(t, at)
	older.Spec.APIVersion = ptr.To[int32](12)
	err = k8s.Update(t.Context(), older)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "apiVersion 12 below status 16: %v", err)
	g.Expect(err.Error()).To(ContainSubstring("may not be below the token's effective API version"))

	same := get(t, at)
	same.Spec.APIVersion = ptr.To[int32](16)
	g.Expect(k8s.Update(t.Context(), same)).To(Succeed(), "the effective version itself is fine")
	waitReady(t, at)
}

// A Secret the API server refuses (here: annotations over its 256 KiB limit,
// which admission of the ApiToken cannot see) stalls the ApiToken with nothing
// left in the backend, and no token is made again until the spec changes.
func TestSecretRejectedByTheAPIServerStallsAndLeavesNothing(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := newApiToken(ns, "huge-annotations")
	at.Spec.Secret.Annotations = map[string]string{"example.com/blob": strings.Repeat("x", 300<<10)}
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonSecretRejected)
	g.Expect(meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled).Message).To(ContainSubstring("metadata.annotations"))
	g.Expect(backendTokens(t, at)).To(BeEmpty(), "nothing is left in the backend")
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonSecretRejected) }, wait, tick).Should(BeTrue())
	creates := backendCalls("create")
	time.Sleep(2 * testResync)
	g.Expect(backendCalls("create")).To(Equal(creates), "no token is made again while the spec is unchanged")

	update(t, at, func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Secret.Annotations = map[string]string{"example.com/blob": "small"}
	})
	waitReady(t, at)
	g.Expect(backendTokens(t, at)).To(HaveLen(1))
}

// A status that names a token the ApiToken did not make (someone with access to
// the status subresource edited it) never makes the operator change, hand out or
// delete that token.
func TestForeignSIDInTheStatusIsNeverUsed(t *testing.T) {
	g := NewWithT(t)
	foreign, _, err := tsAdmin.Create(t.Context(), "foreign-sid-test", backend.CreateRequest{
		Name: "someone else's", PrimaryContact: "ops@example.com", Scopes: []string{"accounts:write"},
		State: backend.StateEnabled, ExternalID: "someone-else",
	})
	g.Expect(err).NotTo(HaveOccurred())
	ns, at := readyToken(t, "tampered", nil)
	own := at.Status.AccountSID

	patch := client.MergeFrom(at.DeepCopy())
	at.Status.AccountSID, at.Status.BackendETag = foreign.SID, ""
	g.Expect(k8s.Status().Patch(t.Context(), at, patch)).To(Succeed())
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "wake up" })
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonForeignToken) }, wait, tick).Should(BeTrue())
	at = waitReady(t, at)
	g.Expect(at.Status.AccountSID).To(Equal(own), "the ApiToken's own token is found again")
	g.Expect(framework.CredentialsOf(getSecret(t, ns, "tampered")).AccountSID).To(Equal(own))
	tok, _, err := tsAdmin.Get(t.Context(), foreign.SID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Scopes).To(Equal([]string{"accounts:write"}), "the foreign token was not changed")
	g.Expect(tok.Description).To(BeEmpty())

	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	_, _, err = tsAdmin.Get(t.Context(), foreign.SID, "")
	g.Expect(err).NotTo(HaveOccurred(), "deleting the ApiToken did not delete the foreign token")
}
