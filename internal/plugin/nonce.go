/*
Copyright 2026 The apitoken-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// nonceKind is what reset and rotate differ in.
type nonceKind struct {
	verb       string // reset | rotate
	past       string
	annotation string
	change     tokensv1alpha1.CredentialChangeType
	short      string
	handled    func(*tokensv1alpha1.ApiTokenStatus) string
}

var (
	resetKind = nonceKind{
		verb: "reset", past: "reset", annotation: tokensv1alpha1.ResetAnnotation, change: tokensv1alpha1.CredentialsReset,
		short:   "Reset an ApiToken now: a new auth token, the old one revoked at once (incident response)",
		handled: func(s *tokensv1alpha1.ApiTokenStatus) string { return s.LastHandledReset },
	}
	rotateKind = nonceKind{
		verb: "rotate", past: "rotated", annotation: tokensv1alpha1.RotateAnnotation, change: tokensv1alpha1.CredentialsRotated,
		short:   "Rotate an ApiToken's credentials now, the way spec.rotation says (with overlap when set)",
		handled: func(s *tokensv1alpha1.ApiTokenStatus) string { return s.LastHandledRotate },
	}
)

type nonceOptions struct {
	*Options
	kind    nonceKind
	wait    bool
	timeout time.Duration
	// pollInterval is how often --wait reads the ApiToken.
	pollInterval time.Duration
}

func newNonceCommand(o *Options, kind nonceKind) *cobra.Command {
	no := &nonceOptions{Options: o, kind: kind, pollInterval: 500 * time.Millisecond}
	cmd := &cobra.Command{
		Use:   kind.verb + " NAME",
		Short: kind.short,
		Long: kind.short + `.

Sets the annotation ` + kind.annotation + ` to a fresh nonce (kubectl-apitoken-<unix ms>).
The operator acts on each nonce exactly once. With --wait, waits until it has and prints
the new credentials' generation and account SID (never the auth token).`,
		Example: "  kubectl apitoken " + kind.verb + " reporting-etl -n analytics --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return no.run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().BoolVar(&no.wait, "wait", false, "Wait until the operator has handled the "+kind.verb)
	cmd.Flags().DurationVar(&no.timeout, "timeout", 2*time.Minute, "How long --wait waits")
	return cmd
}

func (no *nonceOptions) run(ctx context.Context, name string) error {
	c, at, err := no.apiToken(ctx, name)
	if err != nil {
		return err
	}
	nonce := fmt.Sprintf("kubectl-apitoken-%d", no.now().UnixMilli())
	if err := patchAnnotation(ctx, c, at, no.kind.annotation, &nonce); err != nil {
		return err
	}
	fmt.Fprintf(no.IOStreams.Out, "%s %s requested (%s=%s)\n", ref(name), no.kind.verb, no.kind.annotation, nonce)
	if at.Annotations[tokensv1alpha1.PausedAnnotation] == "true" {
		fmt.Fprintf(no.IOStreams.ErrOut, "warning: %s is paused: the operator acts on the %s when it is resumed\n", ref(name), no.kind.verb)
	}
	if !no.wait {
		return nil
	}
	change, err := no.waitHandled(ctx, c, client.ObjectKeyFromObject(at), nonce)
	if err != nil {
		return err
	}
	fmt.Fprintf(no.IOStreams.Out, "%s %s: generation %d, accountSid %s\n", ref(name), no.kind.past, change.Generation, change.AccountSID)
	return nil
}

// waitHandled polls until the ApiToken's status records nonce as handled and
// returns the history entry of the change (the newest one when none names it).
func (no *nonceOptions) waitHandled(ctx context.Context, c client.Client, key client.ObjectKey, nonce string) (tokensv1alpha1.CredentialChange, error) {
	var change tokensv1alpha1.CredentialChange
	ctx, cancel := context.WithTimeout(ctx, no.timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, no.pollInterval, true, func(ctx context.Context) (bool, error) {
		at := &tokensv1alpha1.ApiToken{}
		if err := c.Get(ctx, key, at); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if no.kind.handled(&at.Status) != nonce {
			return false, nil
		}
		for _, h := range at.Status.History {
			if h.Nonce == nonce {
				change = h
				return true, nil
			}
		}
		if len(at.Status.History) > 0 {
			change = at.Status.History[0]
		}
		return true, nil
	})
	if err != nil {
		return change, fmt.Errorf("%s %s/%s not handled within %s (is the operator running? kubectl describe apitoken %s -n %s)",
			no.kind.verb, key.Namespace, key.Name, no.timeout, key.Name, key.Namespace)
	}
	return change, nil
}

// patchAnnotation sets (value non-nil) or removes (nil) one annotation with a
// JSON merge patch, so that nothing else of the object is written.
func patchAnnotation(ctx context.Context, c client.Client, at *tokensv1alpha1.ApiToken, key string, value *string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{key: value}}})
	if err != nil {
		return err
	}
	return c.Patch(ctx, at, client.RawPatch(types.MergePatchType, patch))
}
