package controllers

import (
	"maps"
	"testing"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

func sameMemory(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

// decoded returns a copy of s in memory of its own, as a decoder makes it.
func decoded(s string) string { return string([]byte(s)) }

func TestCachedApiTokensShareRepeatedStrings(t *testing.T) {
	token := func(name string) *tokensv1alpha1.ApiToken {
		at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Name: decoded(name), Namespace: decoded("team-a"), UID: "uid-" + "x"}}
		at.Spec.Scopes = []string{decoded("reports:read")}
		at.Status.Conditions = []metav1.Condition{{Type: decoded("Reconciling"), Status: metav1.ConditionStatus(decoded("False")), Reason: decoded("Ready"), Message: decoded("Up to date")}}
		return at
	}
	a, b := token("a"), token("b")
	internApiToken(a)
	internApiToken(b)
	c, d := a.Status.Conditions[0], b.Status.Conditions[0]
	for field, pair := range map[string][2]string{
		"namespace": {a.Namespace, b.Namespace}, "scope": {a.Spec.Scopes[0], b.Spec.Scopes[0]},
		"condition type": {c.Type, d.Type}, "condition status": {string(c.Status), string(d.Status)},
		"condition reason": {c.Reason, d.Reason}, "condition message": {c.Message, d.Message},
	} {
		if pair[0] != pair[1] || !sameMemory(pair[0], pair[1]) {
			t.Errorf("%s: %q and %q are not one shared copy", field, pair[0], pair[1])
		}
	}
	if a.Name != "a" || b.Name != "b" || sameMemory(a.Name, b.Name) {
		t.Errorf("names are each token's own: %q %q", a.Name, b.Name)
	}
}

func TestCachedApiTokensKeepRepeatsWithinOnce(t *testing.T) {
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{Name: decoded("billing")}}
	at.Status.SecretName, at.Status.AccountSID = decoded("billing"), decoded("TK0123")
	at.Status.History = []tokensv1alpha1.CredentialChange{{AccountSID: decoded("TK0123")}, {AccountSID: decoded("TK9999")}}
	at.Status.Conditions = append(make([]metav1.Condition, 0, 4), metav1.Condition{Type: "Ready"}, metav1.Condition{Type: "Stalled"}, metav1.Condition{Type: "Reconciling"})
	internApiToken(at)
	if cap(at.Status.Conditions) != 3 || at.Status.Conditions[2].Type != "Reconciling" {
		t.Errorf("conditions kept in an array of %d for %d: %+v", cap(at.Status.Conditions), len(at.Status.Conditions), at.Status.Conditions)
	}
	if !sameMemory(at.Status.SecretName, at.Name) || !sameMemory(at.Status.History[0].AccountSID, at.Status.AccountSID) {
		t.Error("a value the token repeats is kept twice")
	}
	if at.Status.History[1].AccountSID != "TK9999" || at.Status.SecretName != "billing" {
		t.Errorf("values changed: %+v", at.Status)
	}
}

func TestInternTableIsBounded(t *testing.T) {
	table := newInternTable(2)
	first, second, third := decoded("one"), decoded("two"), decoded("three")
	internIn(table, &first)
	internIn(table, &second)
	internIn(table, &third)
	again := decoded("three")
	internIn(table, &again)
	if len(table.strings) != 2 {
		t.Fatalf("the table holds %d strings, want its bound 2", len(table.strings))
	}
	if again != "three" || sameMemory(again, third) {
		t.Errorf("past the bound a string is kept as decoded: %q", again)
	}
	one := decoded("one")
	internIn(table, &one)
	if !sameMemory(one, first) {
		t.Error("a value met before the bound is shared")
	}
}

func TestSecretHeadsShareCompactedManagedFields(t *testing.T) {
	head := func() *metav1.PartialObjectMetadata {
		s := secretHead()
		s.Namespace = decoded("team-a")
		controller := true
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: decoded(tokensv1alpha1.GroupVersion.String()), Kind: decoded("ApiToken"), Name: "t", UID: "u", Controller: &controller}}
		s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: decoded(FieldManager), Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:data":{".":{},"f:accountSid":{},"f:authToken":{}},"f:metadata":{"f:annotations":{"f:tokens.apitoken.dev/credentials-hash":{}}}}`)}}
		s.Labels = map[string]string{decoded(tokensv1alpha1.ManagedByLabel): decoded(tokensv1alpha1.ManagedByValue), decoded(tokensv1alpha1.ApiTokenLabel): decoded("t")}
		return s
	}
	a, _ := secretCacheTransform(head())
	b, _ := secretCacheTransform(head())
	sa, sb := a.(*metav1.PartialObjectMetadata), b.(*metav1.PartialObjectMetadata)
	if &sa.ManagedFields[0] != &sb.ManagedFields[0] {
		t.Error("two Secrets whose operator entries read alike share one compacted entry")
	}
	if sa.OwnerReferences[0].Controller != sb.OwnerReferences[0].Controller || !*sa.OwnerReferences[0].Controller {
		t.Error("owner references share one true")
	}
	if keys, others := dataOwnership(sa.ManagedFields); len(keys) != 2 || others {
		t.Errorf("the shared entry still reads as the operator's two keys: %v %v", keys, others)
	}
}

// storedKey returns the key string a map holds for k, and its value.
func storedKey(m map[string]string, k string) (string, string) {
	for key, v := range m {
		if key == k {
			return key, v
		}
	}
	return "", ""
}

func TestSecretHeadsShareLabelKeys(t *testing.T) {
	head := func(token string) *metav1.PartialObjectMetadata {
		s := secretHead()
		controller := true
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "ApiToken", Name: token, UID: "u", Controller: &controller}}
		// A label of the spec's template: labels beyond the implied two are kept.
		s.Labels = map[string]string{decoded(tokensv1alpha1.ManagedByLabel): decoded(tokensv1alpha1.ManagedByValue), decoded(tokensv1alpha1.ApiTokenLabel): decoded(token),
			decoded("team"): decoded("payments")}
		return s
	}
	a, _ := secretCacheTransform(head("a"))
	b, _ := secretCacheTransform(head("b"))
	la, lb := a.(*metav1.PartialObjectMetadata).Labels, b.(*metav1.PartialObjectMetadata).Labels
	ka, va := storedKey(la, tokensv1alpha1.ManagedByLabel)
	kb, vb := storedKey(lb, tokensv1alpha1.ManagedByLabel)
	if !sameMemory(ka, kb) || !sameMemory(va, vb) || va != tokensv1alpha1.ManagedByValue {
		t.Errorf("the managed-by label is one shared key and value: %q=%q, %q=%q", ka, va, kb, vb)
	}
	ka, va = storedKey(la, tokensv1alpha1.ApiTokenLabel)
	kb, vb = storedKey(lb, tokensv1alpha1.ApiTokenLabel)
	if !sameMemory(ka, kb) || va != "a" || vb != "b" {
		t.Errorf("the apitoken label shares its key and keeps each value: %q=%q, %q=%q", ka, va, kb, vb)
	}
}

// TestSeenWritesAreForgotten: the resourceVersion of a status write is kept
// only until an update shows the cache has it, not for the ApiToken's life.
func TestSeenWritesAreForgotten(t *testing.T) {
	r := &ApiTokenReconciler{}
	at := &tokensv1alpha1.ApiToken{ObjectMeta: metav1.ObjectMeta{UID: "u", ResourceVersion: "7"}}
	r.rememberWrite(at)
	seen := r.forgetSeenWrites()
	older := at.DeepCopy()
	older.ResourceVersion = "6"
	if !seen.Update(event.UpdateEvent{ObjectOld: older, ObjectNew: older}) {
		t.Fatal("the observer filters nothing")
	}
	if _, kept := r.written.Load(types.UID("u")); !kept {
		t.Fatal("a write the cache does not have yet is kept")
	}
	if !seen.Update(event.UpdateEvent{ObjectOld: older, ObjectNew: at}) {
		t.Fatal("the observer filters nothing")
	}
	if _, kept := r.written.Load(types.UID("u")); kept {
		t.Error("a write the cache has is forgotten")
	}
}

// TestSecretCacheDropsImpliedLabels: a Secret whose labels are only the two
// every Secret of its ApiToken carries is cached without them, and read with
// them; any other set of labels is kept as it is.
func TestSecretCacheDropsImpliedLabels(t *testing.T) {
	head := func(labels map[string]string) *metav1.PartialObjectMetadata {
		s := secretHead()
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "ApiToken", Name: "billing", UID: "u", Controller: ptr.To(true)}}
		s.Labels = labels
		return s
	}
	implied := map[string]string{tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue, tokensv1alpha1.ApiTokenLabel: "billing"}
	out, _ := secretCacheTransform(head(maps.Clone(implied)))
	cached := out.(*metav1.PartialObjectMetadata)
	if cached.Labels != nil {
		t.Fatalf("implied labels kept in the cache: %v", cached.Labels)
	}
	withImpliedLabels(cached)
	if !maps.Equal(cached.Labels, implied) {
		t.Errorf("read back as %v, want %v", cached.Labels, implied)
	}
	for name, labels := range map[string]map[string]string{
		"another ApiToken's name": {tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue, tokensv1alpha1.ApiTokenLabel: "other"},
		"no ApiToken label":       {tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue},
		"a template label too":    {tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue, tokensv1alpha1.ApiTokenLabel: "billing", "team": "payments"},
		"an internal Secret":      {tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue, tokensv1alpha1.ApiTokenLabel: "billing", tokensv1alpha1.InternalSecretLabel: "pending"},
	} {
		out, _ := secretCacheTransform(head(maps.Clone(labels)))
		cached := out.(*metav1.PartialObjectMetadata)
		withImpliedLabels(cached)
		if !maps.Equal(cached.Labels, labels) {
			t.Errorf("%s: cached and read as %v, want %v", name, cached.Labels, labels)
		}
	}
}

// TestSecretCachePacksDeliveryAnnotations: a Secret whose annotations are
// only the credentials' generation and hash is cached with them packed in one
// string, and read back with the same annotations and no generateName; any
// other Secret is cached as it is.
func TestSecretCachePacksDeliveryAnnotations(t *testing.T) {
	head := func(generateName string, annotations map[string]string) *metav1.PartialObjectMetadata {
		s := secretHead()
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: tokensv1alpha1.GroupVersion.String(), Kind: "ApiToken", Name: "billing", UID: "u", Controller: ptr.To(true)}}
		s.GenerateName, s.Annotations = generateName, annotations
		return s
	}
	delivery := map[string]string{credentialsGenerationAnnotation: "3", credentialsHashAnnotation: "0a1b2c"}
	out, _ := secretCacheTransform(head("", maps.Clone(delivery)))
	cached := out.(*metav1.PartialObjectMetadata)
	if cached.Annotations != nil {
		t.Fatalf("annotations kept as a map in the cache: %v", cached.Annotations)
	}
	withDeliveryAnnotations(cached)
	if !maps.Equal(cached.Annotations, delivery) || cached.GenerateName != "" {
		t.Errorf("read back as %v (generateName %q), want %v", cached.Annotations, cached.GenerateName, delivery)
	}
	if got := deliveryIn(cached); got.generation != 3 || got.hash != "0a1b2c" {
		t.Errorf("delivery read as generation %d, hash %q", got.generation, got.hash)
	}
	for name, c := range map[string]struct {
		generateName string
		annotations  map[string]string
	}{
		"no annotations":        {"", nil},
		"a template annotation": {"", map[string]string{credentialsGenerationAnnotation: "3", credentialsHashAnnotation: "0a1b2c", "team": "payments"}},
		"the hash alone":        {"", map[string]string{credentialsHashAnnotation: "0a1b2c", "team": "payments"}},
		"a generateName":        {"billing-", maps.Clone(delivery)},
		"a NUL in a value":      {"", map[string]string{credentialsGenerationAnnotation: "3\x00x", credentialsHashAnnotation: "0a1b2c"}},
	} {
		out, _ := secretCacheTransform(head(c.generateName, maps.Clone(c.annotations)))
		cached := out.(*metav1.PartialObjectMetadata)
		withDeliveryAnnotations(cached)
		if !maps.Equal(cached.Annotations, c.annotations) || cached.GenerateName != c.generateName {
			t.Errorf("%s: cached and read as %v (generateName %q), want %v (%q)", name, cached.Annotations, cached.GenerateName, c.annotations, c.generateName)
		}
	}
}
