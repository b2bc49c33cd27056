package controllers

import (
	"testing"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend/hydra"
)

func TestUnsupportedByCapabilities(t *testing.T) {
	every := (&backend.Client{}).Capabilities()
	none := backend.Capabilities{}
	disabled := tokensv1alpha1.ApiTokenSpec{Disabled: true}
	adopting := tokensv1alpha1.ApiTokenSpec{Adopt: &tokensv1alpha1.Adoption{AccountSID: "x"}}
	for _, tc := range []struct {
		name string
		spec tokensv1alpha1.ApiTokenSpec
		caps backend.Capabilities
		want int
	}{
		{"a plain spec needs nothing", tokensv1alpha1.ApiTokenSpec{}, none, 0},
		{"disabled on a type that can disable", disabled, every, 0},
		{"disabled on a type that cannot", disabled, none, 1},
		{"adoption on a type that can claim", adopting, every, 0},
		{"adoption on a type that cannot", adopting, none, 1},
		{"Hydra can do both", tokensv1alpha1.ApiTokenSpec{Disabled: true, Adopt: adopting.Adopt}, hydra.Backend{}.Capabilities(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unsupportedBy(&tc.spec, tc.caps, "b"); len(got) != tc.want {
				t.Errorf("unsupportedBy = %q, want %d entries", got, tc.want)
			}
		})
	}
}
