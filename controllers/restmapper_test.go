package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// countingMapper serves one kind and counts the questions it is asked.
type countingMapper struct {
	meta.RESTMapper
	asked int
}

func (c *countingMapper) RESTMapping(gk schema.GroupKind, _ ...string) (*meta.RESTMapping, error) {
	c.asked++
	if gk.Kind != "ApiToken" {
		return nil, &meta.NoKindMatchError{GroupKind: gk}
	}
	return &meta.RESTMapping{Resource: schema.GroupVersionResource{Group: gk.Group, Version: "v1alpha1", Resource: "apitokens"}, Scope: meta.RESTScopeNamespace}, nil
}

func TestMemoRESTMapperAsksOncePerFoundKind(t *testing.T) {
	under := &countingMapper{}
	m := &memoRESTMapper{RESTMapper: under}
	gk := schema.GroupKind{Group: "tokens.apitoken.dev", Kind: "ApiToken"}
	first, err := m.RESTMapping(gk, "v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	first.Resource.Resource = "changed by a caller"
	second, err := m.RESTMapping(gk, "v1alpha1")
	if err != nil || second.Resource.Resource != "apitokens" || second.Scope.Name() != meta.RESTScopeNameNamespace {
		t.Fatalf("second answer %+v, %v: want the found mapping, unchanged by the first caller", second, err)
	}
	if under.asked != 1 {
		t.Errorf("the dynamic mapper was asked %d times for one kind, want 1", under.asked)
	}
	missing := schema.GroupKind{Group: "example.com", Kind: "Missing"}
	for range 2 {
		if _, err := m.RESTMapping(missing, "v1"); !meta.IsNoMatchError(err) {
			t.Fatalf("a kind not served: %v, want a no-match error", err)
		}
	}
	if under.asked != 3 {
		t.Errorf("a kind not found is asked again each time (it may be served later): %d questions, want 3", under.asked)
	}
}
