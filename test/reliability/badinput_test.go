package reliability

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// badInputCount counts the cases this file ran, for the log (docs/reliability.md
// quotes it).
var badInputCount int

func manyStrings(n int, format string) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// TestAdmissionRejectsBadManifests sends raw manifests, as kubectl would, and
// expects the API server to refuse each with a message naming the problem, and
// to store nothing.
func TestAdmissionRejectsBadManifests(t *testing.T) {
	ns := "badinput-admission"
	framework.CreateNamespace(t, k8s, ns, nil)
	apiToken := func(spec map[string]any) *unstructured.Unstructured {
		base := withSpec(map[string]any{"primaryContact": "ops@example.com", "scopes": []any{"reports:read"}}, spec)
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "tokens.apitoken.dev/v1alpha1", "kind": "ApiToken",
			"metadata": map[string]any{"name": "bad", "namespace": ns}, "spec": base,
		}}
	}
	tokenBackend := func(spec map[string]any) *unstructured.Unstructured {
		base := withSpec(map[string]any{"url": "http://127.0.0.1:1", "credentialsSecretRef": map[string]any{"namespace": "apitoken-system", "name": "tokenservice-admin"}}, spec)
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "tokens.apitoken.dev/v1alpha1", "kind": "TokenBackend",
			"metadata": map[string]any{"name": "bad-backend"}, "spec": base,
		}}
	}
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := map[string]struct {
		obj  *unstructured.Unstructured
		want string
	}{
		"displayName empty":             {apiToken(map[string]any{"displayName": ""}), "spec.displayName"},
		"displayName 101 chars":         {apiToken(map[string]any{"displayName": long(101)}), "spec.displayName"},
		"description 1025 chars":        {apiToken(map[string]any{"description": long(1025)}), "spec.description"},
		"primaryContact missing":        {apiToken(map[string]any{"primaryContact": nil}), "spec.primaryContact: Required"},
		"primaryContact not an e-mail":  {apiToken(map[string]any{"primaryContact": "ops"}), "spec.primaryContact"},
		"primaryContact 255 chars":      {apiToken(map[string]any{"primaryContact": long(245) + "@example.com"}), "spec.primaryContact"},
		"primaryContact wrong type":     {apiToken(map[string]any{"primaryContact": 42}), "spec.primaryContact"},
		"developerEmail malformed":      {apiToken(map[string]any{"developerEmails": []any{"dev@"}}), "spec.developerEmails[0]"},
		"developerEmail too long":       {apiToken(map[string]any{"developerEmails": []any{long(250) + "@x.io"}}), "spec.developerEmails[0]"},
		"developerEmails 51":            {apiToken(map[string]any{"developerEmails": manyStrings(51, "dev%d@example.com")}), "spec.developerEmails"},
		"developerEmails duplicated":    {apiToken(map[string]any{"developerEmails": []any{"a@example.com", "a@example.com"}}), "Duplicate value"},
		"scope upper case":              {apiToken(map[string]any{"scopes": []any{"Reports:Read"}}), "spec.scopes[0]"},
		"scope without permission":      {apiToken(map[string]any{"scopes": []any{"reports"}}), "spec.scopes[0]"},
		"scope with a space":            {apiToken(map[string]any{"scopes": []any{"reports: read"}}), "spec.scopes[0]"},
		"scope with two colons":         {apiToken(map[string]any{"scopes": []any{"a:b:c"}}), "spec.scopes[0]"},
		"scope 129 chars":               {apiToken(map[string]any{"scopes": []any{long(64) + ":" + long(64)}}), "spec.scopes[0]"},
		"scopes 257":                    {apiToken(map[string]any{"scopes": manyStrings(257, "cat%d:read")}), "spec.scopes"},
		"scopes duplicated":             {apiToken(map[string]any{"scopes": []any{"a:b", "a:b"}}), "Duplicate value"},
		"apiVersion zero":               {apiToken(map[string]any{"apiVersion": 0}), "spec.apiVersion"},
		"apiVersion negative":           {apiToken(map[string]any{"apiVersion": -3}), "spec.apiVersion"},
		"apiVersion a string":           {apiToken(map[string]any{"apiVersion": "16"}), "spec.apiVersion"},
		"deletionPolicy unknown":        {apiToken(map[string]any{"deletionPolicy": "Keep"}), "spec.deletionPolicy"},
		"disabled not a boolean":        {apiToken(map[string]any{"disabled": "yes"}), "spec.disabled"},
		"secret type unknown":           {apiToken(map[string]any{"secret": map[string]any{"type": "kubernetes.io/tls"}}), "spec.secret.type"},
		"secret keys equal":             {apiToken(map[string]any{"secret": map[string]any{"accountSidKey": "k", "authTokenKey": "k"}}), "must differ"},
		"secret key with a slash":       {apiToken(map[string]any{"secret": map[string]any{"authTokenKey": "a/b"}}), "spec.secret.authTokenKey"},
		"secret key empty":              {apiToken(map[string]any{"secret": map[string]any{"accountSidKey": ""}}), "spec.secret.accountSidKey"},
		"secret name not DNS":           {apiToken(map[string]any{"secret": map[string]any{"name": "Not_A_Name"}}), "spec.secret.name"},
		"secret name 254 chars":         {apiToken(map[string]any{"secret": map[string]any{"name": long(254)}}), "spec.secret.name"},
		"secret labels 65":              {apiToken(map[string]any{"secret": map[string]any{"labels": manyLabels(65)}}), "spec.secret.labels"},
		"backendRef name empty":         {apiToken(map[string]any{"backendRef": map[string]any{"name": ""}}), "spec.backendRef.name"},
		"backend url not http":          {tokenBackend(map[string]any{"url": "ftp://tokens.example.com"}), "spec.url"},
		"backend url missing":           {tokenBackend(map[string]any{"url": nil}), "spec.url: Required"},
		"backend resync below 5s":       {tokenBackend(map[string]any{"resyncInterval": "1s"}), "resyncInterval must be at least 5s"},
		"backend qps zero":              {tokenBackend(map[string]any{"rateLimit": map[string]any{"qps": 0}}), "spec.rateLimit.qps"},
		"backend burst negative":        {tokenBackend(map[string]any{"rateLimit": map[string]any{"burst": -1}}), "spec.rateLimit.burst"},
		"backend credentials no name":   {tokenBackend(map[string]any{"credentialsSecretRef": map[string]any{"namespace": "x"}}), "spec.credentialsSecretRef.name"},
		"backend namespaces bad labels": {tokenBackend(map[string]any{"allowedNamespaces": map[string]any{"matchLabels": "team"}}), "spec.allowedNamespaces.matchLabels"},
		// Values a Secret or label cannot hold, refused before anything is made.
		"name too long for a label value": {withName(apiToken(nil), long(64)), "at most 63 characters"},
		"secret label key with a space":   {apiToken(map[string]any{"secret": map[string]any{"labels": map[string]any{"bad key": "v"}}}), "valid label key"},
		"secret label value 64 chars":     {apiToken(map[string]any{"secret": map[string]any{"labels": map[string]any{"team": long(64)}}}), "spec.secret.labels.team"},
		"secret label value with a space": {apiToken(map[string]any{"secret": map[string]any{"labels": map[string]any{"team": "a b"}}}), "spec.secret.labels.team"},
		"secret annotation key invalid":   {apiToken(map[string]any{"secret": map[string]any{"annotations": map[string]any{"-bad": "x"}}}), "valid annotation key"},
		"rotation period 30m":             {apiToken(map[string]any{"rotation": map[string]any{"period": "30m"}}), "at least 1h"},
		"rotation overlap 200h":           {apiToken(map[string]any{"rotation": map[string]any{"overlap": "200h"}}), "between 0s and 168h"},
		"restart target kind Job":         {apiToken(map[string]any{"secret": map[string]any{"restartTargets": []any{map[string]any{"kind": "Job", "name": "x"}}}}), "spec.secret.restartTargets[0].kind"},
		// TokenBackend.spec.policy and allowInsecureHTTP.
		"policy scope without permission": {tokenBackend(map[string]any{"policy": map[string]any{"allowedScopes": []any{"reports"}}}), "spec.policy.allowedScopes[0]"},
		"policy scope *:*":                {tokenBackend(map[string]any{"policy": map[string]any{"allowedScopes": []any{"*:*"}}}), "spec.policy.allowedScopes[0]"},
		"policy scope wildcard prefix":    {tokenBackend(map[string]any{"policy": map[string]any{"allowedScopes": []any{"rep*:read"}}}), "spec.policy.allowedScopes[0]"},
		"policy scopes empty":             {tokenBackend(map[string]any{"policy": map[string]any{"allowedScopes": []any{}}}), "spec.policy.allowedScopes"},
		"policy scopes 129":               {tokenBackend(map[string]any{"policy": map[string]any{"allowedScopes": manyStrings(129, "c%d:*")}}), "spec.policy.allowedScopes"},
		"policy scopes duplicated":        {tokenBackend(map[string]any{"policy": map[string]any{"allowedScopes": []any{"a:*", "a:*"}}}), "Duplicate value"},
		"policy deletion unknown":         {tokenBackend(map[string]any{"policy": map[string]any{"allowedDeletionPolicies": []any{"Keep"}}}), "spec.policy.allowedDeletionPolicies[0]"},
		"policy deletion empty":           {tokenBackend(map[string]any{"policy": map[string]any{"allowedDeletionPolicies": []any{}}}), "spec.policy.allowedDeletionPolicies"},
		"policy adoption bad selector":    {tokenBackend(map[string]any{"policy": map[string]any{"adoptionNamespaces": map[string]any{"matchLabels": "x"}}}), "spec.policy.adoptionNamespaces.matchLabels"},
		"allowInsecureHTTP not a boolean": {tokenBackend(map[string]any{"allowInsecureHTTP": "yes"}), "spec.allowInsecureHTTP"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			badInputCount++
			err := k8s.Create(t.Context(), tc.obj)
			if err == nil {
				_ = k8s.Delete(t.Context(), tc.obj)
				t.Fatalf("accepted; want a rejection naming %q", tc.want)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("err %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q does not name %q", err, tc.want)
			}
		})
	}

	t.Run("apiVersion downgrade", func(t *testing.T) {
		badInputCount++
		at := newToken(ns, "downgrade", "none")
		at.Spec.APIVersion = ptr.To[int32](15)
		if err := k8s.Create(t.Context(), at); err != nil {
			t.Fatal(err)
		}
		at.Spec.APIVersion = ptr.To[int32](14)
		err := k8s.Update(t.Context(), at)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "apiVersion may only rise") {
			t.Fatalf("downgrade: %v", err)
		}
	})
	list := &tokensv1alpha1.ApiTokenList{}
	_ = k8s.List(t.Context(), list, client.InNamespace(ns))
	for _, at := range list.Items {
		if at.Name == "bad" {
			t.Error("a rejected manifest was stored")
		}
	}
}

func manyLabels(n int) map[string]any {
	out := map[string]any{}
	for i := range n {
		out[fmt.Sprintf("l%d", i)] = "v"
	}
	return out
}

// TestBadSituationsStallWithReasonAndEvent covers what admission cannot check:
// each ends Stalled (or waiting) with a clear reason and a Warning event, creates
// nothing in the backend and leaves an existing Secret as it was.
func TestBadSituationsStallWithReasonAndEvent(t *testing.T) {
	// The catalog offers what the backend then rejects (gone stale): the backend's
	// own refusal stays reachable past the operator's catalog check.
	w := newWorld(t, "badinput", worldOptions{resync: 5 * time.Second, wrap: framework.StaleCatalog(
		[]string{"nosuch:read"}, []string{"stranger@example.com"}, []int{99})})
	ns := "badinput-stall"
	framework.CreateNamespace(t, k8s, ns, nil)

	noBackendToken := func(t *testing.T, at *tokensv1alpha1.ApiToken) {
		t.Helper()
		tokens, err := w.service.Admin.FindByExternalID(t.Context(), string(getToken(t, at.Namespace, at.Name).UID))
		if err != nil || len(tokens) != 0 {
			t.Errorf("%d backend tokens (%v), want none", len(tokens), err)
		}
	}

	t.Run("unknown backend", func(t *testing.T) {
		badInputCount++
		at := newToken(ns, "unknown-backend", "no-such-backend")
		mustCreate(t, at)
		expectStalled(t, at, tokensv1alpha1.ReasonBackendNotFound, `"no-such-backend" does not exist`, false)
	})
	t.Run("namespace not allowed", func(t *testing.T) {
		badInputCount++
		tb := &tokensv1alpha1.TokenBackend{}
		if err := k8s.Get(t.Context(), client.ObjectKey{Name: w.backend}, tb); err != nil {
			t.Fatal(err)
		}
		restricted := tb.DeepCopy()
		restricted.ObjectMeta = metav1.ObjectMeta{Name: "badinput-restricted"}
		restricted.Spec.AllowedNamespaces = &metav1.LabelSelector{MatchLabels: map[string]string{"tokens": "allowed"}}
		mustCreate(t, restricted)
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), restricted) })
		at := newToken(ns, "not-allowed", restricted.Name)
		mustCreate(t, at)
		expectStalled(t, at, tokensv1alpha1.ReasonNamespaceNotAllowed, `does not allow namespace "badinput-stall"`, false)
		noBackendToken(t, at)
	})
	t.Run("foreign Secret name", func(t *testing.T) {
		badInputCount++
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: ns}, StringData: map[string]string{"x": "y"}}
		mustCreate(t, foreign)
		at := newToken(ns, "taken", w.backend)
		mustCreate(t, at)
		expectStalled(t, at, tokensv1alpha1.ReasonSecretConflict, `Secret "taken" exists and is not controlled`, false)
		noBackendToken(t, at)
		after := &corev1.Secret{}
		_ = k8s.Get(t.Context(), client.ObjectKeyFromObject(foreign), after)
		if after.ResourceVersion != foreign.ResourceVersion {
			t.Error("the foreign Secret was changed")
		}
	})

	rejections := map[string]struct {
		change  func(*tokensv1alpha1.ApiToken)
		message string
	}{
		"unknown scope":        {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"nosuch:read"} }, `scopes "nosuch:read" is not accepted`},
		"unknown contact":      {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "stranger@example.com" }, `"stranger@example.com" is not a user`},
		"version above latest": {func(at *tokensv1alpha1.ApiToken) { at.Spec.APIVersion = ptr.To[int32](99) }, "apiVersion 99 is not offered"},
	}
	for name, tc := range rejections {
		t.Run("backend rejects on create: "+name, func(t *testing.T) {
			badInputCount++
			at := newToken(ns, "create-"+strings.ReplaceAll(name, " ", "-"), w.backend)
			tc.change(at)
			mustCreate(t, at)
			expectStalled(t, at, tokensv1alpha1.ReasonBackendRejected, tc.message, false)
			noBackendToken(t, at)
		})
		t.Run("backend rejects on update: "+name, func(t *testing.T) {
			badInputCount++
			at := newToken(ns, "update-"+strings.ReplaceAll(name, " ", "-"), w.backend)
			mustCreate(t, at)
			if err := settle(&trialState{ns: ns, name: at.Name}); err != nil {
				t.Fatal(err)
			}
			ready := getToken(t, ns, at.Name)
			secretBefore := &corev1.Secret{}
			_ = k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: at.Name}, secretBefore)
			tokenBefore, _, _ := w.service.Admin.Get(t.Context(), ready.Status.AccountSID, "")
			if err := mutate(&trialState{ns: ns, name: at.Name}, tc.change); err != nil {
				t.Fatal(err)
			}
			expectStalled(t, at, tokensv1alpha1.ReasonBackendRejected, tc.message, false)
			tokenAfter, _, _ := w.service.Admin.Get(t.Context(), ready.Status.AccountSID, "")
			if tokenAfter.ETag != tokenBefore.ETag {
				t.Error("the backend token changed")
			}
			secretAfter := &corev1.Secret{}
			_ = k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: at.Name}, secretAfter)
			if secretAfter.ResourceVersion != secretBefore.ResourceVersion {
				t.Error("the Secret changed")
			}
		})
	}

	backendCases := map[string]struct {
		mutate func(*tokensv1alpha1.TokenBackend, *corev1.Secret)
		reason string
	}{
		"malformed CA bundle": {func(tb *tokensv1alpha1.TokenBackend, _ *corev1.Secret) { tb.Spec.CABundle = "not a certificate" }, tokensv1alpha1.ReasonCredentialsInvalid},
		"missing admin key Secret": {func(tb *tokensv1alpha1.TokenBackend, _ *corev1.Secret) {
			tb.Spec.CredentialsSecretRef.Name = "does-not-exist"
		}, tokensv1alpha1.ReasonCredentialsInvalid},
		"admin key Secret without the key": {func(_ *tokensv1alpha1.TokenBackend, s *corev1.Secret) {
			s.Data = map[string][]byte{"other": []byte("x")}
		}, tokensv1alpha1.ReasonCredentialsInvalid},
		"wrong admin key": {func(_ *tokensv1alpha1.TokenBackend, s *corev1.Secret) {
			s.Data = map[string][]byte{"apiKey": []byte("wrong-key")}
		}, tokensv1alpha1.ReasonBackendUnauthorized},
		"a valid admin key outside the operator's namespace": {func(tb *tokensv1alpha1.TokenBackend, s *corev1.Secret) {
			s.Namespace, tb.Spec.CredentialsSecretRef.Namespace = "default", "default"
		}, tokensv1alpha1.ReasonCredentialsInvalid},
		"plain http to a host that is not loopback": {func(tb *tokensv1alpha1.TokenBackend, _ *corev1.Secret) {
			tb.Spec.URL = "http://tokens.example.invalid:8080"
		}, tokensv1alpha1.ReasonInsecureURL},
	}
	i := 0
	for name, tc := range backendCases {
		i++
		t.Run("backend: "+name, func(t *testing.T) {
			badInputCount++
			key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("key-%d", i), Namespace: "apitoken-system"},
				Data: map[string][]byte{"apiKey": []byte(adminKey)}}
			tb := &tokensv1alpha1.TokenBackend{}
			if err := k8s.Get(t.Context(), client.ObjectKey{Name: w.backend}, tb); err != nil {
				t.Fatal(err)
			}
			bad := tb.DeepCopy()
			bad.ObjectMeta = metav1.ObjectMeta{Name: fmt.Sprintf("badinput-backend-%d", i)}
			bad.Spec.CredentialsSecretRef.Name = key.Name
			tc.mutate(bad, key)
			mustCreate(t, key)
			mustCreate(t, bad)
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), bad) })
			if err := framework.Poll(framework.WaitTimeout, func() error {
				got := &tokensv1alpha1.TokenBackend{}
				_ = k8s.Get(t.Context(), client.ObjectKeyFromObject(bad), got)
				c := meta.FindStatusCondition(got.Status.Conditions, tokensv1alpha1.ConditionReady)
				if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
					return fmt.Errorf("Ready %+v, want False/%s", c, tc.reason)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := framework.Poll(framework.WaitTimeout, func() error { return hasWarning(t, "", bad.Name, tc.reason) }); err != nil {
				t.Error(err)
			}
			at := newToken(ns, fmt.Sprintf("on-bad-backend-%d", i), bad.Name)
			mustCreate(t, at)
			if err := framework.Poll(framework.WaitTimeout, func() error {
				c := meta.FindStatusCondition(getToken(t, ns, at.Name).Status.Conditions, tokensv1alpha1.ConditionReady)
				if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tokensv1alpha1.ReasonBackendNotReady {
					return fmt.Errorf("Ready %+v, want False/BackendNotReady", c)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			noBackendToken(t, at)
		})
	}
	t.Logf("bad-input cases so far: %d", badInputCount)
}

// expectStalled waits until the ApiToken is Stalled for the reason, for its
// current generation, with Ready False and a message that contains want (is
// want, when exact), and then for a Warning event with the reason.
func expectStalled(t *testing.T, at *tokensv1alpha1.ApiToken, reason, want string, exact bool) {
	t.Helper()
	err := framework.Poll(framework.WaitTimeout, func() error {
		got := getToken(t, at.Namespace, at.Name)
		c := meta.FindStatusCondition(got.Status.Conditions, tokensv1alpha1.ConditionStalled)
		switch {
		case c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason || got.Status.ObservedGeneration != got.Generation:
			return fmt.Errorf("Stalled %+v, want True/%s", c, reason)
		case exact && c.Message != want:
			return fmt.Errorf("message %q, want %q", c.Message, want)
		case !strings.Contains(c.Message, want):
			return fmt.Errorf("message %q lacks %q", c.Message, want)
		case !meta.IsStatusConditionFalse(got.Status.Conditions, tokensv1alpha1.ConditionReady):
			return errors.New("Ready is not False")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := framework.Poll(framework.WaitTimeout, func() error { return hasWarning(t, at.Namespace, at.Name, reason) }); err != nil {
		t.Error(err)
	}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
}

// hasWarning finds a Warning event with the reason about the named object (in any
// namespace when ns is empty).
func hasWarning(t *testing.T, ns, name, reason string) error {
	list := &eventsv1.EventList{}
	opts := []client.ListOption{}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := k8s.List(t.Context(), list, opts...); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason && e.Type == corev1.EventTypeWarning {
			return nil
		}
	}
	return fmt.Errorf("no Warning event %s about %s", reason, name)
}

// withSpec applies spec to base: a nil value removes the field.
func withSpec(base, spec map[string]any) map[string]any {
	for k, v := range spec {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	return base
}

func withName(obj *unstructured.Unstructured, name string) *unstructured.Unstructured {
	obj.SetName(name)
	return obj
}
