package controllers

import (
	"net/http"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// mappingKey is one RESTMapping question: a kind and the version asked for.
type mappingKey struct {
	gk      schema.GroupKind
	version string
}

// memoRESTMapper answers RESTMapping, for one version or none, from the
// mappings it found before. controller-runtime's metadata client asks the REST
// mapper twice per request (is the kind namespaced, and its resource), and its
// dynamic mapper answers through a priority and a multi mapper that make an
// error for every group they do not hold: make bench measured that as a tenth
// of the operator's allocations, and so of its garbage collection, for the
// finalizer and status patches alone. Only found mappings are kept: a kind not
// (yet) served is asked again, as the dynamic mapper would. The kinds the
// operator uses are fixed, so the memo holds a handful of entries.
type memoRESTMapper struct {
	meta.RESTMapper
	found sync.Map // mappingKey -> meta.RESTMapping
}

// newMemoRESTMapper is the manager's MapperProvider: controller-runtime's
// dynamic REST mapper behind a memoRESTMapper.
func newMemoRESTMapper(cfg *rest.Config, httpClient *http.Client) (meta.RESTMapper, error) {
	m, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return &memoRESTMapper{RESTMapper: m}, nil
}

// RESTMapping returns a copy of the mapping, so that no caller can change what
// the next one gets.
func (m *memoRESTMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if len(versions) > 1 {
		return m.RESTMapper.RESTMapping(gk, versions...)
	}
	key := mappingKey{gk: gk}
	if len(versions) == 1 {
		key.version = versions[0]
	}
	if found, ok := m.found.Load(key); ok {
		mapping := found.(meta.RESTMapping)
		return &mapping, nil
	}
	mapping, err := m.RESTMapper.RESTMapping(gk, versions...)
	if err != nil {
		return nil, err
	}
	m.found.Store(key, *mapping)
	return mapping, nil
}
