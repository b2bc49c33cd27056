package controllers

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var testCreds = backend.Credentials{AccountSID: "TK123", AuthToken: "secret-token-value", Generation: 3}

func TestRenderSecret(t *testing.T) {
	tests := map[string]struct {
		mutate   func(*tokensv1alpha1.ApiToken)
		wantName string
		wantType corev1.SecretType
		wantData map[string]string
		wantTeam string
	}{
		"defaults": {
			wantName: "etl", wantType: corev1.SecretTypeOpaque,
			wantData: map[string]string{"accountSid": "TK123", "authToken": "secret-token-value"},
		},
		"custom name and keys": {
			mutate: func(at *tokensv1alpha1.ApiToken) {
				at.Spec.Secret = tokensv1alpha1.SecretTemplate{Name: "creds", AccountSIDKey: "user", AuthTokenKey: "pass"}
			},
			wantName: "creds", wantType: corev1.SecretTypeOpaque,
			wantData: map[string]string{"user": "TK123", "pass": "secret-token-value"},
		},
		"basic auth ignores custom keys": {
			mutate: func(at *tokensv1alpha1.ApiToken) {
				at.Spec.Secret = tokensv1alpha1.SecretTemplate{Type: corev1.SecretTypeBasicAuth, AccountSIDKey: "user"}
			},
			wantName: "etl", wantType: corev1.SecretTypeBasicAuth,
			wantData: map[string]string{"username": "TK123", "password": "secret-token-value"},
		},
		"template labels cannot override the operator's": {
			mutate: func(at *tokensv1alpha1.ApiToken) {
				at.Spec.Secret.Labels = map[string]tokensv1alpha1.LabelValue{"team": "analytics", tokensv1alpha1.ManagedByLabel: "someone", tokensv1alpha1.ApiTokenLabel: "other"}
			},
			wantName: "etl", wantType: corev1.SecretTypeOpaque, wantTeam: "analytics",
			wantData: map[string]string{"accountSid": "TK123", "authToken": "secret-token-value"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			at := apiToken(tc.mutate)
			s := mustRender(at, testCreds)
			if s.Name != tc.wantName || s.Namespace != "analytics" || s.Type != tc.wantType {
				t.Errorf("got %s/%s type %s", s.Namespace, s.Name, s.Type)
			}
			got := map[string]string{}
			for k, v := range s.Data {
				got[k] = string(v)
			}
			if diff := cmp.Diff(tc.wantData, got); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
			if s.Labels[tokensv1alpha1.ManagedByLabel] != tokensv1alpha1.ManagedByValue || s.Labels[tokensv1alpha1.ApiTokenLabel] != "etl" {
				t.Errorf("operator labels missing or overridden: %v", s.Labels)
			}
			if s.Labels["team"] != tc.wantTeam {
				t.Errorf("team label %q, want %q", s.Labels["team"], tc.wantTeam)
			}
			d := deliveryIn(headOf(s, FieldManager))
			if !d.holds(layoutOf(at, backendEndpoints{}), testCreds.AccountSID) || d.generation != 3 {
				t.Errorf("deliveryIn of a rendered Secret: %+v", d)
			}
			for k, v := range s.Annotations {
				if strings.Contains(k+v, testCreds.AuthToken.Reveal()) {
					t.Errorf("annotation %s holds the auth token", k)
				}
			}
		})
	}
}

// headOf is the metadata the API server keeps of a Secret written by manager:
// managedFields name the data keys and annotations it set.
func headOf(s *corev1.Secret, manager string) *metav1.PartialObjectMetadata {
	head := secretHead()
	head.ObjectMeta = *s.ObjectMeta.DeepCopy()
	head.ManagedFields = []metav1.ManagedFieldsEntry{managed(manager, slices.Collect(maps.Keys(s.Data)), slices.Collect(maps.Keys(s.Annotations))...)}
	return head
}

func managed(manager string, dataKeys []string, annotations ...string) metav1.ManagedFieldsEntry {
	data, notes := map[string]any{}, map[string]any{}
	for _, k := range dataKeys {
		data["f:"+k] = map[string]any{}
	}
	for _, k := range annotations {
		notes["f:"+k] = map[string]any{}
	}
	raw, _ := json.Marshal(map[string]any{"f:data": data, "f:metadata": map[string]any{"f:annotations": notes}, "f:type": map[string]any{}})
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(string(raw))}
}

func TestDeliveryInDetectsEdits(t *testing.T) {
	at := apiToken(nil)
	tests := map[string]func(*metav1.PartialObjectMetadata){
		"token edited by someone": func(s *metav1.PartialObjectMetadata) {
			s.ManagedFields = append(s.ManagedFields, managed("kubectl-edit", []string{"authToken"}))
		},
		"key added by someone": func(s *metav1.PartialObjectMetadata) {
			s.ManagedFields = append(s.ManagedFields, managed("kubectl-edit", []string{"extra"}))
		},
		"key removed": func(s *metav1.PartialObjectMetadata) {
			s.ManagedFields = []metav1.ManagedFieldsEntry{managed(FieldManager, []string{"accountSid"})}
		},
		"generation edited by someone": func(s *metav1.PartialObjectMetadata) {
			s.ManagedFields = append(s.ManagedFields, managed("kubectl-edit", nil, credentialsGenerationAnnotation))
		},
		"generation edited":          func(s *metav1.PartialObjectMetadata) { s.Annotations[credentialsGenerationAnnotation] = "4" },
		"hash removed":               func(s *metav1.PartialObjectMetadata) { delete(s.Annotations, credentialsHashAnnotation) },
		"generation not number":      func(s *metav1.PartialObjectMetadata) { s.Annotations[credentialsGenerationAnnotation] = "x" },
		"written by another manager": func(s *metav1.PartialObjectMetadata) { s.ManagedFields[0].Manager = "someone" },
		"unreadable managed fields": func(s *metav1.PartialObjectMetadata) {
			s.ManagedFields = append(s.ManagedFields, metav1.ManagedFieldsEntry{Manager: "x", FieldsV1: metav1.NewFieldsV1("{")})
		},
	}
	for name, edit := range tests {
		head := headOf(mustRender(at, testCreds), FieldManager)
		edit(head)
		if deliveryIn(head).holds(layoutOf(at, backendEndpoints{}), testCreds.AccountSID) {
			t.Errorf("%s: edited Secret accepted as intact", name)
		}
	}
	if deliveryIn(nil).holds(layoutOf(at, backendEndpoints{}), testCreds.AccountSID) {
		t.Error("nil Secret accepted")
	}
	// A status that names another token (a forged status.accountSid) never makes
	// the Secret's credentials pass for that token's, nor does another layout.
	head := headOf(mustRender(at, testCreds), FieldManager)
	if deliveryIn(head).holds(layoutOf(at, backendEndpoints{}), "TK999") {
		t.Error("a Secret of TK123 accepted as holding TK999")
	}
	basic := apiToken(func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Type = corev1.SecretTypeBasicAuth })
	if deliveryIn(head).holds(layoutOf(basic, backendEndpoints{}), testCreds.AccountSID) {
		t.Error("an Opaque Secret accepted as the basic-auth one the spec asks for")
	}
}

// TestSecretCacheTransform: the cache keeps of an ApiToken's Secret only what
// tells which credentials it holds, and of any other labelled Secret nothing
// but names and owners.
func TestSecretCacheTransform(t *testing.T) {
	at := apiToken(nil)
	owned := headOf(mustRender(at, testCreds), FieldManager)
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "ApiToken", Name: at.Name, UID: "u1", Controller: ptr.To(true)}}
	owned.ManagedFields = append(owned.ManagedFields, managed("kube-controller-manager", nil, "other"))
	out, err := secretCacheTransform(owned.DeepCopyObject())
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*metav1.PartialObjectMetadata)
	uncompactSecret(got) // as cachedSecret reads it
	if len(got.ManagedFields) != 1 || !deliveryIn(got).holds(layoutOf(at, backendEndpoints{}), testCreds.AccountSID) {
		t.Errorf("owned Secret's metadata no longer tells what it holds: %+v", got.ManagedFields)
	}
	edited := owned.DeepCopy()
	edited.ManagedFields = append(edited.ManagedFields, managed("kubectl-edit", []string{"authToken"}))
	out, _ = secretCacheTransform(edited)
	uncompactSecret(out.(*metav1.PartialObjectMetadata))
	if deliveryIn(out.(*metav1.PartialObjectMetadata)).holds(layoutOf(at, backendEndpoints{}), testCreds.AccountSID) {
		t.Error("the cache lost the sign of an edit")
	}
	for name, refs := range map[string][]metav1.OwnerReference{
		"no owner":                {},
		"owned by a Deployment":   {{APIVersion: "apps/v1", Kind: "Deployment", Name: "d", UID: "u2", Controller: ptr.To(true)}},
		"ApiToken of another API": {{APIVersion: "example.com/v1", Kind: "ApiToken", Name: "x", UID: "u3", Controller: ptr.To(true)}},
		"not the controller":      {{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "ApiToken", Name: "x", UID: "u4"}},
	} {
		foreign := headOf(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "big", Labels: map[string]string{tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue},
			Annotations: map[string]string{"a": strings.Repeat("x", 1000)}, OwnerReferences: refs}, Data: map[string][]byte{"blob": nil}}, "someone")
		out, _ := secretCacheTransform(foreign)
		if s := out.(*metav1.PartialObjectMetadata); s.Annotations != nil || s.ManagedFields != nil {
			t.Errorf("%s: a labelled Secret no ApiToken controls keeps annotations or managed fields in the cache", name)
		}
	}
}

func TestSecretUpToDate(t *testing.T) {
	at := apiToken(nil)
	desired := mustRender(at, testCreds)
	tests := map[string]struct {
		edit func(*metav1.PartialObjectMetadata)
		want bool
	}{
		"identical":                {func(*metav1.PartialObjectMetadata) {}, true},
		"extra label from someone": {func(s *metav1.PartialObjectMetadata) { s.Labels["x"] = "y" }, true},
		"extra annotation from kubectl": {func(s *metav1.PartialObjectMetadata) {
			s.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
		}, true},
		"our label removed": {func(s *metav1.PartialObjectMetadata) { delete(s.Labels, tokensv1alpha1.ApiTokenLabel) }, false},
		"data edited": {func(s *metav1.PartialObjectMetadata) {
			s.ManagedFields = append(s.ManagedFields, managed("kubectl-edit", []string{"authToken"}))
		}, false},
		"extra data key": {func(s *metav1.PartialObjectMetadata) {
			s.ManagedFields = append(s.ManagedFields, managed("kubectl-edit", []string{"extra"}))
		}, false},
		"older generation": {func(s *metav1.PartialObjectMetadata) { s.Annotations[credentialsGenerationAnnotation] = "2" }, false},
	}
	for name, tc := range tests {
		existing := headOf(mustRender(at, testCreds), FieldManager)
		tc.edit(existing)
		if got := secretUpToDate(existing, desired); got != tc.want {
			t.Errorf("%s: secretUpToDate = %v, want %v", name, got, tc.want)
		}
	}
	if secretUpToDate(headOf(mustRender(at, testCreds), FieldManager), mustRender(apiToken(func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Type = corev1.SecretTypeBasicAuth }), testCreds)) {
		t.Error("a change of type is up to date")
	}
}

// FuzzRenderSecret renders Secrets for arbitrary templates and credentials: the
// result always carries the operator's labels, round-trips the credentials, and
// never puts the auth token outside the data.
func FuzzRenderSecret(f *testing.F) {
	f.Add("creds", "user", "pass", "TK1", "token-value-123", int64(1), false)
	f.Add("", "", "", "", "", int64(0), true)
	f.Fuzz(func(t *testing.T, name, sidKey, tokenKey, sid, token string, generation int64, basic bool) {
		at := apiToken(func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Secret = tokensv1alpha1.SecretTemplate{Name: name, AccountSIDKey: sidKey, AuthTokenKey: tokenKey}
			if basic {
				at.Spec.Secret.Type = corev1.SecretTypeBasicAuth
			}
		})
		creds := backend.Credentials{AccountSID: sid, AuthToken: backend.AuthToken(token), Generation: generation}
		s := mustRender(at, creds)
		if s.Labels[tokensv1alpha1.ManagedByLabel] != tokensv1alpha1.ManagedByValue {
			t.Fatal("managed-by label missing")
		}
		if len(token) >= 12 {
			for k, v := range s.Annotations {
				if strings.Contains(k+v, token) {
					t.Fatalf("annotation %s holds the token", k)
				}
			}
		}
		if !validKey(sidKey) || !validKey(tokenKey) {
			return // admission refuses the key (and managedFields could not name it)
		}
		got := deliveryIn(headOf(s, FieldManager))
		// With equal keys (which admission refuses) the Secret has one key only.
		wantOK := sid != "" && (basic || effectiveKeysDiffer(sidKey, tokenKey))
		if ok := got.holds(layoutOf(at, backendEndpoints{}), sid); ok != wantOK {
			t.Fatalf("deliveryIn holds = %v, want %v", ok, wantOK)
		}
		if got.holds(layoutOf(at, backendEndpoints{}), sid) && got.generation != generation {
			t.Fatalf("round trip lost the generation")
		}
		if string(s.Data[sidKeyOf(at)]) != sid && wantOK {
			t.Fatalf("the SID is not where the spec says")
		}
	})
}

// effectiveKeysDiffer mirrors the admission rule that the two keys differ.
func effectiveKeysDiffer(sidKey, tokenKey string) bool {
	if sidKey == "" {
		sidKey = "accountSid"
	}
	if tokenKey == "" {
		tokenKey = "authToken"
	}
	return sidKey != tokenKey
}

// FuzzResetDue checks the reset rule on arbitrary annotation values: a reset is
// due exactly for a non-empty value other than the one handled, and handling it
// (recording it) makes it not due.
func FuzzResetDue(f *testing.F) {
	f.Add("incident-42", "")
	f.Add("", "x")
	f.Add("same", "same")
	f.Fuzz(func(t *testing.T, annotation, lastHandled string) {
		due := resetDue(annotation, lastHandled)
		if due != (annotation != "" && annotation != lastHandled) {
			t.Fatalf("resetDue(%q, %q) = %v", annotation, lastHandled, due)
		}
		if due && resetDue(annotation, annotation) {
			t.Fatal("a handled nonce is due again")
		}
		at := apiToken(nil)
		if key := resetKey(at, annotation); len(key) > 255 || (annotation != lastHandled && key == resetKey(at, lastHandled)) {
			t.Fatalf("reset key %q unusable", key)
		}
	})
}

func TestSecretIsRepaired(t *testing.T) {
	g := NewWithT(t)
	ns, _ := readyToken(t, "repair", nil)
	good := getSecret(t, ns, "repair")

	g.Expect(k8s.Delete(t.Context(), good)).To(Succeed())
	g.Eventually(func() []byte {
		s := &corev1.Secret{}
		_ = k8s.Get(t.Context(), client.ObjectKeyFromObject(good), s)
		return s.Data["authToken"]
	}, wait, tick).Should(Equal(good.Data["authToken"]))

	edited := getSecret(t, ns, "repair")
	edited.Data["authToken"] = []byte("tampered")
	delete(edited.Labels, "tokens.apitoken.dev/apitoken")
	g.Expect(k8s.Update(t.Context(), edited)).To(Succeed())
	g.Eventually(func() []byte { return getSecret(t, ns, "repair").Data["authToken"] }, wait, tick).Should(Equal(good.Data["authToken"]))
	g.Eventually(func() map[string]string { return getSecret(t, ns, "repair").Labels }, wait, tick).Should(HaveKey("tokens.apitoken.dev/apitoken"))
}

func TestSecretTypeChangeReplacesSecret(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "retype", nil)
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Type = corev1.SecretTypeBasicAuth })
	g.Eventually(func() corev1.SecretType {
		s := &corev1.Secret{}
		_ = k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "retype"}, s)
		return s.Type
	}, wait, tick).Should(Equal(corev1.SecretTypeBasicAuth))
	waitReady(t, at)
	g.Expect(verifyStatus(t, framework.CredentialsAt(getSecret(t, ns, "retype"), corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey), "reports:read")).To(Equal(200))
}

func TestRenamingTheSecretMovesIt(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "mover", nil)
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Name = "moved" })
	g.Eventually(func() string { return get(t, at).Status.SecretName }, wait, tick).Should(Equal("moved"))
	waitReady(t, at)
	g.Expect(verifyStatus(t, framework.CredentialsOf(getSecret(t, ns, "moved")), "reports:read")).To(Equal(200))
	waitGone(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mover"}})
}

func TestForeignSecretIsNeverTouched(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: ns, Labels: map[string]string{"owner": "someone-else"}},
		Data:       map[string][]byte{"password": []byte("theirs")},
	}
	g.Expect(k8s.Create(t.Context(), foreign)).To(Succeed())
	at := newApiToken(ns, "taken")
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonSecretConflict)
	g.Expect(meta.IsStatusConditionFalse(at.Status.Conditions, tokensv1alpha1.ConditionReady)).To(BeTrue())
	g.Expect(kstatusOf(t, at)).To(Equal(kstatus.FailedStatus), "kstatus sees a Stalled ApiToken as Failed")
	g.Expect(backendTokens(t, at)).To(BeEmpty(), "nothing is left in the backend")
	after := getSecret(t, ns, "taken")
	g.Expect(after.Data).To(Equal(foreign.Data))
	g.Expect(after.ResourceVersion).To(Equal(foreign.ResourceVersion))
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonSecretConflict) }, wait, tick).Should(BeTrue())

	// Choosing another name resolves it; deleting leaves the foreign Secret alone.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Name = "taken-2" })
	waitReady(t, at)
	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	g.Expect(getSecret(t, ns, "taken").ResourceVersion).To(Equal(foreign.ResourceVersion))
}

// The token created before the conflict was found is deleted again; once the
// foreign Secret is gone, the next create must make a new token, not replay the
// deleted one by its idempotency key.
func TestForeignSecretRemovedLaterGetsAWorkingToken(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "squatted", Namespace: ns}, Data: map[string][]byte{"k": []byte("v")}}
	g.Expect(k8s.Create(t.Context(), foreign)).To(Succeed())
	at := newApiToken(ns, "squatted")
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonSecretConflict)
	g.Expect(at.Status.AccountSID).To(BeEmpty())
	g.Expect(backendTokens(t, at)).To(BeEmpty())

	g.Expect(k8s.Delete(t.Context(), foreign)).To(Succeed())
	at = waitReady(t, at) // the stall is retried at the resync interval
	s := getSecret(t, ns, "squatted")
	g.Expect(isControlledBy(s, at)).To(BeTrue())
	g.Expect(verifyStatus(t, framework.CredentialsOf(s), "reports:read")).To(Equal(200))
	g.Expect(backendTokens(t, at)).To(HaveLen(1))
}

func sidKeyOf(at *tokensv1alpha1.ApiToken) string {
	k, _ := at.Spec.Secret.KeyNames()
	return k
}

// secretKeyPattern is the CRD's pattern for the Secret key names.
var secretKeyPattern = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// validKey reports a key name admission accepts: empty (the default) or one that
// matches secretKeyPattern.
func validKey(key string) bool { return key == "" || secretKeyPattern.MatchString(key) }

// mustRender renders the Secret of the ApiToken's default or templated layout
// (with no backend URL).
func mustRender(at *tokensv1alpha1.ApiToken, creds backend.Credentials) *corev1.Secret {
	s, err := renderSecret(at, layoutOf(at, backendEndpoints{}), creds)
	if err != nil {
		panic(err)
	}
	return s
}
