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
	"fmt"

	"github.com/spf13/cobra"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

type pauseOptions struct {
	*Options
	pause bool
}

func newPauseCommand(o *Options, pause bool) *cobra.Command {
	po := &pauseOptions{Options: o, pause: pause}
	cmd := &cobra.Command{
		Use:   "pause NAME",
		Short: "Pause an ApiToken: the operator leaves it alone (no backend calls, no writes)",
		Long: `Pause an ApiToken: sets the annotation tokens.apitoken.dev/paused: "true". The operator
makes no backend calls and writes nothing but the Paused condition until it is resumed.
Deleting a paused ApiToken leaves its backend token and Secret (as Orphan).`,
		Example: "  kubectl apitoken pause reporting-etl -n analytics",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return po.run(cmd.Context(), args[0])
		},
	}
	if !pause {
		cmd.Use = "resume NAME"
		cmd.Short = "Resume a paused ApiToken: the operator checks it against the backend again"
		cmd.Long = "Resume a paused ApiToken: removes the annotation tokens.apitoken.dev/paused."
		cmd.Example = "  kubectl apitoken resume reporting-etl -n analytics"
	}
	return cmd
}

func (po *pauseOptions) run(ctx context.Context, name string) error {
	c, at, err := po.apiToken(ctx, name)
	if err != nil {
		return err
	}
	paused := at.Annotations[tokensv1alpha1.PausedAnnotation] == "true"
	switch {
	case po.pause && paused:
		_, err = fmt.Fprintf(po.IOStreams.Out, "%s already paused\n", ref(name))
		return err
	case !po.pause && !paused && at.Annotations[tokensv1alpha1.PausedAnnotation] == "":
		_, err = fmt.Fprintf(po.IOStreams.Out, "%s not paused\n", ref(name))
		return err
	}
	var value *string
	verb := "resumed"
	if po.pause {
		value, verb = new("true"), "paused"
	}
	if err := patchAnnotation(ctx, c, at, tokensv1alpha1.PausedAnnotation, value); err != nil {
		return err
	}
	_, err = fmt.Fprintf(po.IOStreams.Out, "%s %s\n", ref(name), verb)
	return err
}
