package controllers

import (
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// The cache holds every ApiToken and its Secret's metadata, so its memory grows
// with the number of tokens (make bench-scale: the peak RSS per token at
// 10,000). Strings that thousands of cached objects hold alike (a namespace, an
// API version, a condition's type, status, reason and "Up to date", a scope, a
// field manager) are decoded into a copy of their own per object; the cache
// transforms replace them by one shared copy. Only fields whose values repeat
// across tokens are interned: a name, UID or SID (or Ready's message, which
// names both) would only fill the table.

// internTableSize bounds the distinct strings kept: past it, strings are kept
// as decoded (correct, only not shared), so that values a tenant varies at will
// cannot grow the table without bound.
const internTableSize = 4096

// internMaxLen is the longest string interned: longer ones rarely repeat.
const internMaxLen = 256

// internTable is a bounded set of shared strings, FieldsV1 and one-entry
// managedFields.
type internTable struct {
	mu      sync.Mutex
	size    int
	strings map[string]string
	fields  map[string]*metav1.FieldsV1
	entries map[sharedEntryKey][]metav1.ManagedFieldsEntry
}

// sharedEntryKey is what a compacted managedFields entry holds: its manager
// and its (shared) fields.
type sharedEntryKey struct {
	manager string
	fields  *metav1.FieldsV1
}

func newInternTable(size int) *internTable {
	return &internTable{size: size, strings: map[string]string{}, fields: map[string]*metav1.FieldsV1{},
		entries: map[sharedEntryKey][]metav1.ManagedFieldsEntry{}}
}

// managedFields returns the one shared managedFields holding only e, an entry
// compactManagedFields made (manager, FieldsType and shared FieldsV1 only).
// Cached objects share it as they share FieldsV1: readers get deep copies.
func (t *internTable) managedFields(e metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	key := sharedEntryKey{manager: e.Manager, fields: e.FieldsV1}
	t.mu.Lock()
	defer t.mu.Unlock()
	if shared, ok := t.entries[key]; ok {
		return shared
	}
	shared := []metav1.ManagedFieldsEntry{e}
	if len(t.entries) < t.size {
		t.entries[key] = shared
	}
	return shared
}

// cacheStrings is the table of the cache transforms.
var cacheStrings = newInternTable(internTableSize)

// intern replaces *s by the shared copy of its value in cacheStrings.
func intern[T ~string](s *T) { internIn(cacheStrings, s) }

// internIn replaces *s by t's shared copy of its value, made on first sight
// while t has room.
func internIn[T ~string](t *internTable, s *T) {
	v := string(*s)
	if v == "" || len(v) > internMaxLen {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if shared, ok := t.strings[v]; ok {
		*s = T(shared)
		return
	}
	if len(t.strings) < t.size {
		shared := strings.Clone(v)
		t.strings[shared] = shared
		*s = T(shared)
	}
}

func internAll(values []string) {
	for i := range values {
		intern(&values[i])
	}
}

// sharedFieldsV1 returns the one FieldsV1 with this content. Cached objects
// share it: the cache hands out deep copies, and event handlers only read.
func sharedFieldsV1(raw string) *metav1.FieldsV1 { return cacheStrings.fieldsV1(raw) }

func (t *internTable) fieldsV1(raw string) *metav1.FieldsV1 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f, ok := t.fields[raw]; ok {
		return f
	}
	f := metav1.NewFieldsV1(raw)
	if len(t.fields) < t.size {
		t.fields[raw] = f
	}
	return f
}

var sharedTrue, sharedFalse = true, false

// sharedBool points at one of two shared booleans, instead of one allocation per
// owner reference.
func sharedBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &sharedTrue
	default:
		return &sharedFalse
	}
}

// internedValues are the label and annotation keys whose values repeat across
// the operator's objects; other values (a token's name, a hash) are each
// object's own.
var internedValues = map[string]bool{
	tokensv1alpha1.ManagedByLabel:      true,
	tokensv1alpha1.InternalSecretLabel: true,
	credentialsGenerationAnnotation:    true,
}

// internMap returns m with its keys shared, and the values of internedValues'
// keys. The map is made again (a map's keys cannot be replaced in place); the
// decoded one becomes garbage.
func internMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		intern(&k)
		if internedValues[k] {
			intern(&v)
		}
		out[k] = v
	}
	return out
}

// internObjectMeta interns what repeats in any cached object's metadata.
func internObjectMeta(tm *metav1.TypeMeta, om *metav1.ObjectMeta) {
	intern(&tm.APIVersion)
	intern(&tm.Kind)
	intern(&om.Namespace)
	om.Labels = internMap(om.Labels)
	om.Annotations = internMap(om.Annotations)
	internAll(om.Finalizers)
	for i := range om.OwnerReferences {
		ref := &om.OwnerReferences[i]
		intern(&ref.APIVersion)
		intern(&ref.Kind)
		ref.Controller, ref.BlockOwnerDeletion = sharedBool(ref.Controller), sharedBool(ref.BlockOwnerDeletion)
	}
	for i := range om.ManagedFields {
		e := &om.ManagedFields[i]
		intern(&e.Manager)
		intern(&e.APIVersion)
		intern(&e.FieldsType)
		intern(&e.Operation)
	}
}

// internApiToken interns what repeats across cached ApiTokens.
func internApiToken(at *tokensv1alpha1.ApiToken) {
	internObjectMeta(&at.TypeMeta, &at.ObjectMeta)
	intern(&at.Spec.BackendRef.Name)
	intern(&at.Spec.PrimaryContact)
	internAll(at.Spec.DeveloperEmails)
	internAll(at.Spec.Scopes)
	intern(&at.Spec.DeletionPolicy)
	intern(&at.Spec.Secret.Type)
	for i := range at.Status.Conditions {
		c := &at.Status.Conditions[i]
		intern(&c.Type)
		intern(&c.Status)
		intern(&c.Reason)
		if c.Status != metav1.ConditionTrue {
			// The messages of conditions that are not True are fixed texts ("Up
			// to date"); Ready's names the token and its Secret, which no other
			// ApiToken shares.
			intern(&c.Message)
		}
	}
	intern(&at.Status.State)
	for i := range at.Status.History {
		h := &at.Status.History[i]
		intern(&h.Type)
		shareWithin(&h.AccountSID, at.Status.AccountSID)
	}
	intern(&at.Spec.Description)
	shareWithin(&at.Status.SecretName, at.Name)
	at.Status.Conditions = exactly(at.Status.Conditions)
}

// exactly returns s in an array of its length. The JSON decoder grows slices by
// doubling: an ApiToken's three conditions sit in an array of four (384 bytes,
// where three take 288), for as long as the object is cached.
func exactly[S ~[]E, E any](s S) S {
	if cap(s) == len(s) {
		return s
	}
	return append(S(nil), s...)
}

// shareWithin points *s at same's memory when they are equal: values one object
// repeats (its Secret's name is most often its own; its history names the SID
// of its status) are kept once, and no table is needed.
func shareWithin(s *string, same string) {
	if *s == same {
		*s = same
	}
}
