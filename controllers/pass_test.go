package controllers

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// A credential change whose Secret write failed is not recorded, so that its
// replay delivers and rolls; one that no retry can deliver, or that rolls
// nothing, stays recorded.
func TestUndeliveredChangesAreReplayed(t *testing.T) {
	for name, tc := range map[string]struct {
		change     tokensv1alpha1.CredentialChangeType
		secretErr  error
		wantReplay bool
	}{
		"reset, Secret write failed":       {change: tokensv1alpha1.CredentialsReset, secretErr: errors.New("etcd timeout"), wantReplay: true},
		"rotation, Secret write failed":    {change: tokensv1alpha1.CredentialsRotated, secretErr: errors.New("etcd timeout"), wantReplay: true},
		"reset, a foreign Secret":          {change: tokensv1alpha1.CredentialsReset, secretErr: secretConflictError{name: "taken"}},
		"creation rolls nothing to replay": {change: tokensv1alpha1.CredentialsCreated, secretErr: errors.New("etcd timeout")},
	} {
		t.Run(name, func(t *testing.T) {
			original := &tokensv1alpha1.ApiToken{}
			original.Status.AccountSID = "TK1"
			original.Status.History = []tokensv1alpha1.CredentialChange{{Type: tokensv1alpha1.CredentialsCreated, AccountSID: "TK1", Generation: 1}}
			at := original.DeepCopy()
			at.Status.LastHandledReset = "n1"
			// The history is newest first.
			at.Status.History = append([]tokensv1alpha1.CredentialChange{{Type: tc.change, AccountSID: "TK1", Generation: 2, Nonce: "n1"}}, at.Status.History...)
			p := &pass{at: at, original: original}
			forgetUndeliveredChange(p, tc.secretErr)
			replayed := cmp.Equal(original.Status, at.Status)
			if replayed != tc.wantReplay {
				t.Errorf("status restored = %v, want %v", replayed, tc.wantReplay)
			}
		})
	}
}
