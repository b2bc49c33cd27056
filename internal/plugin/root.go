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

// Package plugin is the kubectl plugin kubectl-apitoken: status, reset, rotate,
// pause, resume, inspect, import and version, with kubectl's flag conventions
// (-n, -A, --context, --kubeconfig, -o) from k8s.io/cli-runtime.
package plugin

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Options are shared by every command: the kubeconfig flags, the streams and
// the clock.
type Options struct {
	ConfigFlags *genericclioptions.ConfigFlags
	IOStreams   genericiooptions.IOStreams
	// Version is printed by the version command.
	Version string
	// Now is the clock used for ages and nonces; time.Now when nil.
	Now func() time.Time
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// NewRootCommand returns the kubectl-apitoken command with all its subcommands.
func NewRootCommand(o *Options) *cobra.Command {
	if o.ConfigFlags == nil {
		o.ConfigFlags = genericclioptions.NewConfigFlags(true)
	}
	cmd := &cobra.Command{
		Use:   "kubectl-apitoken",
		Short: "Operate ApiTokens of apitoken-operator",
		Long: `kubectl-apitoken shows and operates ApiTokens (tokens.apitoken.dev): their status,
resets and rotations, pause, what their Secret holds, and the import of tokens made by
hand. Installed on PATH it runs as "kubectl apitoken".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(o.IOStreams.In)
	cmd.SetOut(o.IOStreams.Out)
	cmd.SetErr(o.IOStreams.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newStatusCommand(o),
		newNonceCommand(o, resetKind),
		newNonceCommand(o, rotateKind),
		newPauseCommand(o, true),
		newPauseCommand(o, false),
		newInspectCommand(o),
		newImportCommand(o),
		newVersionCommand(o),
	)
	return cmd
}

// Execute runs the command line args and prints an error the way kubectl does.
func Execute(o *Options, args []string) error {
	cmd := NewRootCommand(o)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil {
		fmt.Fprintf(o.IOStreams.ErrOut, "error: %v\n", err)
	}
	return err
}
