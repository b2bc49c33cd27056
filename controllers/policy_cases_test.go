package controllers

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestPolicyCasesAtReconcile runs framework.PolicyCases against the operator's
// own rules, which stall an ApiToken that admission did not refuse (no
// admission policy installed, or a TokenBackend tightened since): the same
// cases, and the same messages, as the admission policy's
// (TestAdmissionRefusesPolicyViolations in test/reliability).
func TestPolicyCasesAtReconcile(t *testing.T) {
	for _, tc := range framework.PolicyCases() {
		t.Run(tc.Name, func(t *testing.T) {
			at, tb := tc.ApiToken("ns", "policy-case"), tc.Backend.TokenBackend()
			before := at.Spec.DeepCopy()
			err := checkPolicy(at, tb)
			if diff := cmp.Diff(before, &at.Spec); diff != "" {
				t.Errorf("checkPolicy changed the spec (-before +after):\n%s", diff)
			}
			if tc.Refusal == "" {
				if err != nil {
					t.Fatalf("stalled an allowed spec: %v", err)
				}
				return
			}
			var stall *stalledError
			if !errors.As(err, &stall) {
				t.Fatalf("checkPolicy = %v, want a stall with %q", err, tc.Refusal)
			}
			if stall.reason != tokensv1alpha1.ReasonPolicyViolation || stall.message != tc.Refusal {
				t.Errorf("stalled %s: %q, want %s: %q", stall.reason, stall.message, tokensv1alpha1.ReasonPolicyViolation, tc.Refusal)
			}
		})
	}
}
