package controllers

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// The operator keeps no credentials at rest (docs/design.md, "Trust boundary":
// the cache holds no credentials). It watches and caches Secrets as metadata
// only (the API server never sends it a Secret's data on the watch), and knows
// what a Secret of its own holds from three things the metadata carries:
//   - credentials-generation: the generation of the credentials written;
//   - credentials-hash: a fingerprint of the SID, generation, type and key names
//     (never the token), so that a Secret of another token, generation or layout
//     is told apart;
//   - managedFields: the API server records who set each data key. A Secret
//     whose data keys the operator alone set, exactly the two it writes, holds
//     what the operator wrote; one that anyone else edited (kubectl edit, a
//     script, a GitOps tool) is rewritten from the backend.
// Only while a pass writes a Secret does the operator hold its auth token.

// Annotations the operator keeps on the Secret to know, without reading its data,
// which credentials it holds.
const (
	credentialsGenerationAnnotation = "tokens.apitoken.dev/credentials-generation"
	credentialsHashAnnotation       = "tokens.apitoken.dev/credentials-hash"
)

// secretHead is an empty Secret metadata object, the form the operator reads
// Secrets in.
func secretHead() *metav1.PartialObjectMetadata {
	s := &metav1.PartialObjectMetadata{}
	s.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return s
}

// secretDelivery is what a Secret's metadata says it holds.
type secretDelivery struct {
	generation int64
	hash       string
	// dataKeys are the data keys the operator alone set; untouched is false when
	// anyone else set a data key or one of the operator's annotations.
	dataKeys  []string
	untouched bool
}

// deliveryIn reads a Secret's metadata (nil: no Secret).
func deliveryIn(s *metav1.PartialObjectMetadata) secretDelivery {
	if s == nil {
		return secretDelivery{}
	}
	generation, err := strconv.ParseInt(s.Annotations[credentialsGenerationAnnotation], 10, 64)
	if err != nil {
		return secretDelivery{}
	}
	ours, others := dataOwnership(s.ManagedFields)
	return secretDelivery{generation: generation, hash: s.Annotations[credentialsHashAnnotation], dataKeys: ours, untouched: !others}
}

// holds reports whether the Secret holds, untouched, the credentials of sid at
// its generation, in the layout the ApiToken's spec asks for.
func (d secretDelivery) holds(l secretLayout, sid string) bool {
	return d.untouched && sid != "" && slices.Equal(d.dataKeys, l.keys) && d.hash == credentialsHash(sid, d.generation, l)
}

// secretUpToDate reports whether the Secret whose metadata is existing already
// holds what desired declares: the same credentials (generation and hash, data
// set by the operator alone with exactly desired's keys), labels and
// annotations. Labels and annotations added by others are left alone.
func secretUpToDate(existing *metav1.PartialObjectMetadata, desired *corev1.Secret) bool {
	d := deliveryIn(existing)
	if !d.untouched || !slices.Equal(d.dataKeys, slices.Sorted(maps.Keys(desired.Data))) {
		return false
	}
	for k, v := range desired.Labels {
		if existing.Labels[k] != v {
			return false
		}
	}
	for k, v := range desired.Annotations {
		if existing.Annotations[k] != v {
			return false
		}
	}
	return true
}

// dataOwnership reads managedFields: the data keys that the operator's field
// manager alone set (sorted), and whether any other manager set a data key or
// one of the operator's annotations.
func dataOwnership(entries []metav1.ManagedFieldsEntry) (ours []string, others bool) {
	for _, e := range entries {
		keys, annotations := touchedFields(e.FieldsV1)
		if e.Manager == FieldManager {
			ours = append(ours, keys...)
			continue
		}
		if len(keys) > 0 || annotations {
			others = true
		}
	}
	slices.Sort(ours)
	return slices.Compact(ours), others
}

// touchedFields reads one managedFields entry: the data keys it set, and
// whether it set one of the operator's credentials annotations. Every pass
// reads its Secret's entries; those of the cache are few distinct ones, shared
// between Secrets, which compactManagedFields parsed once as it made them and
// left in touchedMemo. The keys returned may be shared: callers copy before
// they change them.
func touchedFields(f *metav1.FieldsV1) (dataKeys []string, credentialsAnnotations bool) {
	if f == nil {
		return nil, false
	}
	t, ok := touchedMemo.get(f.GetRawBytes())
	if !ok {
		t = parseTouchedFields(f.GetRawBytes())
	}
	return t.dataKeys, t.credentialsAnnotations
}

type touched struct {
	dataKeys               []string
	credentialsAnnotations bool
}

func parseTouchedFields(raw []byte) touched {
	var fields struct {
		Data     map[string]json.RawMessage `json:"f:data"`
		Metadata struct {
			Annotations map[string]json.RawMessage `json:"f:annotations"`
		} `json:"f:metadata"`
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return touched{credentialsAnnotations: true} // unreadable: as if someone else had set it
	}
	var t touched
	for k := range fields.Data {
		if key, ok := strings.CutPrefix(k, "f:"); ok {
			t.dataKeys = append(t.dataKeys, key)
		}
	}
	for k := range fields.Metadata.Annotations {
		if k == "f:"+credentialsGenerationAnnotation || k == "f:"+credentialsHashAnnotation {
			t.credentialsAnnotations = true
		}
	}
	return t
}

// touchedMemo holds the cache's compacted managedFields entries, parsed, by
// their text: up to maxTouchedMemo of them (one per set of data keys, and per
// whether the entry set the credentials annotations; beyond it, as for Secrets
// read from the API, each read parses).
var touchedMemo = &memo[touched]{entries: map[string]touched{}}

const maxTouchedMemo = 512

type memo[V any] struct {
	mu      sync.RWMutex
	entries map[string]V
}

func (m *memo[V]) get(key []byte) (V, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.entries[string(key)] // no copy of key for the lookup
	return v, ok
}

// put keeps v under key unless the memo has it or is full. Entries are never
// dropped: the compacted entries of a running operator are a handful.
func (m *memo[V]) put(key []byte, v V) {
	m.mu.RLock()
	_, known := m.entries[string(key)]
	full := len(m.entries) >= maxTouchedMemo
	m.mu.RUnlock()
	if known || full {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries) < maxTouchedMemo {
		m.entries[string(key)] = v
	}
}

// secretCacheTransform is how the cache keeps the Secrets that carry the
// operator's label (as metadata: they are watched without their data). A Secret
// an ApiToken controls keeps its labels (none when they are the implied two),
// annotations and, of its managedFields, only what dataOwnership reads; any
// other one (the label alone gives nothing) keeps neither annotations nor
// managedFields, so that a tenant's labelled Secrets cost the operator next to
// nothing.
func secretCacheTransform(in any) (any, error) {
	s, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	ref := metav1.GetControllerOf(s)
	if ref == nil || ref.Kind != "ApiToken" || !strings.HasPrefix(ref.APIVersion, tokensv1alpha1.GroupVersion.Group+"/") {
		s.Annotations, s.ManagedFields = nil, nil
		return s, nil
	}
	if impliedLabels(s.Labels, ref.Name) {
		s.Labels = nil
	}
	packDeliveryAnnotations(&s.ObjectMeta)
	// Interned first: the compacted managedFields are shared, never written.
	internObjectMeta(&s.TypeMeta, &s.ObjectMeta)
	s.ManagedFields = compactManagedFields(s.ManagedFields)
	return s, nil
}

// impliedLabels reports whether labels are exactly the two that every Secret of
// the ApiToken named owner carries, and that the cache can tell without keeping
// them: the managed-by label (the cache holds no Secret without it) and the
// ApiToken label naming its controller. Most of the operator's Secrets carry
// no others; their labels map (about 350 bytes per Secret in the cache, make
// bench-scale) is dropped and made again when a pass reads the Secret
// (withImpliedLabels).
func impliedLabels(labels map[string]string, owner string) bool {
	return len(labels) == 2 && labels[tokensv1alpha1.ManagedByLabel] == tokensv1alpha1.ManagedByValue &&
		labels[tokensv1alpha1.ApiTokenLabel] == owner
}

// withImpliedLabels gives a Secret read from the cache the labels the cache
// dropped as implied. Only the cache drops them: a Secret read from the API
// without labels has none.
func withImpliedLabels(s *metav1.PartialObjectMetadata) {
	if s.Labels != nil {
		return
	}
	if ref := metav1.GetControllerOf(s); ref != nil {
		s.Labels = map[string]string{tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue, tokensv1alpha1.ApiTokenLabel: ref.Name}
	}
}

// A Secret the operator wrote carries two annotations, the credentials'
// generation and hash; as a map they cost about 320 bytes per Secret in the
// cache (make bench-scale's heap profile: 3.1 of 39 MB at 10,000 tokens), as
// one string about 48. packDeliveryAnnotations keeps them so when they are the
// Secret's only annotations, in generateName, which a Secret the operator
// wrote never has, behind a NUL that no name accepted by the API server holds;
// withDeliveryAnnotations gives the map back on cache reads (cachedSecret), as
// withImpliedLabels does the labels.
const packedAnnotationsMark = "\x00"

func packDeliveryAnnotations(om *metav1.ObjectMeta) {
	generation, hasGeneration := om.Annotations[credentialsGenerationAnnotation]
	hash, hasHash := om.Annotations[credentialsHashAnnotation]
	if len(om.Annotations) != 2 || !hasGeneration || !hasHash || om.GenerateName != "" ||
		strings.Contains(generation, packedAnnotationsMark) {
		return
	}
	om.GenerateName = packedAnnotationsMark + generation + packedAnnotationsMark + hash
	om.Annotations = nil
}

// withDeliveryAnnotations undoes packDeliveryAnnotations on a Secret read
// from the cache.
func withDeliveryAnnotations(s *metav1.PartialObjectMetadata) {
	packed, ok := strings.CutPrefix(s.GenerateName, packedAnnotationsMark)
	if !ok {
		return
	}
	generation, hash, _ := strings.Cut(packed, packedAnnotationsMark)
	s.GenerateName = ""
	s.Annotations = map[string]string{credentialsGenerationAnnotation: generation, credentialsHashAnnotation: hash}
}

// uncompactSecret gives a Secret read from the cache what secretCacheTransform
// left implied or packed: its metadata then reads as the API server's.
func uncompactSecret(s *metav1.PartialObjectMetadata) {
	withImpliedLabels(s)
	withDeliveryAnnotations(s)
}

// compactManagedFields keeps of each entry only the manager and what
// touchedFields reads, in the same format; Secrets whose entries read alike
// share one copy of them (sharedFieldsV1).
func compactManagedFields(entries []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, e := range entries {
		if e.FieldsV1 == nil {
			continue
		}
		t := parseTouchedFields(e.FieldsV1.GetRawBytes())
		keys, annotations := t.dataKeys, t.credentialsAnnotations
		if len(keys) == 0 && !annotations {
			continue
		}
		data := map[string]struct{}{}
		for _, k := range keys {
			data["f:"+k] = struct{}{}
		}
		fields := map[string]any{"f:data": data}
		if annotations {
			fields["f:metadata"] = map[string]any{"f:annotations": map[string]struct{}{"f:" + credentialsHashAnnotation: {}}}
		}
		raw, _ := json.Marshal(fields)
		touchedMemo.put(raw, t)
		out = append(out, metav1.ManagedFieldsEntry{Manager: e.Manager, FieldsType: "FieldsV1", FieldsV1: sharedFieldsV1(string(raw))})
	}
	if len(out) == 1 {
		// Most Secrets have one entry, the operator's, alike: they share one.
		return cacheStrings.managedFields(out[0])
	}
	return out
}
