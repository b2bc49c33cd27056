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
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

type statusOptions struct {
	*Options
	allNamespaces bool
	printFlags    *genericclioptions.PrintFlags
}

func newStatusCommand(o *Options) *cobra.Command {
	so := &statusOptions{Options: o, printFlags: genericclioptions.NewPrintFlags("").WithTypeSetter(Scheme)}
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show the state of ApiTokens: SID, state, version, readiness, last change, next rotation",
		Example: `  kubectl apitoken status -n analytics
  kubectl apitoken status -A -o wide
  kubectl apitoken status reporting-etl -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return so.run(cmd.Context(), args)
		},
	}
	cmd.Flags().BoolVarP(&so.allNamespaces, "all-namespaces", "A", false, "List ApiTokens across all namespaces (ignores -n)")
	so.printFlags.AddFlags(cmd)
	cmd.Flag("output").Usage = "Output format: json, yaml or wide (default: a table)"
	return cmd
}

func (so *statusOptions) run(ctx context.Context, args []string) error {
	c, ns, err := so.client()
	if err != nil {
		return err
	}
	if so.allNamespaces && len(args) > 0 {
		return fmt.Errorf("a NAME cannot be used with --all-namespaces")
	}
	list := &tokensv1alpha1.ApiTokenList{}
	if len(args) == 1 {
		at, err := getApiToken(ctx, c, ns, args[0])
		if err != nil {
			return err
		}
		list.Items = []tokensv1alpha1.ApiToken{*at}
	} else {
		var opts []client.ListOption
		if !so.allNamespaces {
			opts = append(opts, client.InNamespace(ns))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return err
		}
	}
	format := *so.printFlags.OutputFormat
	switch format {
	case "", "wide":
		if len(list.Items) == 0 {
			return so.noneFound(ns)
		}
		return printStatusTable(so.IOStreams.Out, list.Items, so.allNamespaces, format == "wide", so.now())
	}
	printer, err := so.printFlags.ToPrinter()
	if err != nil {
		return err
	}
	var obj runtime.Object = list
	if len(args) == 1 {
		obj = &list.Items[0]
	}
	return printer.PrintObj(obj, so.IOStreams.Out)
}

func (so *statusOptions) noneFound(ns string) error {
	if so.allNamespaces {
		_, err := fmt.Fprintln(so.IOStreams.ErrOut, "No ApiTokens found.")
		return err
	}
	_, err := fmt.Fprintf(so.IOStreams.ErrOut, "No ApiTokens found in %s namespace.\n", ns)
	return err
}

// printStatusTable writes the table of status, like kubectl get.
func printStatusTable(out io.Writer, items []tokensv1alpha1.ApiToken, withNamespace, wide bool, now time.Time) error {
	w := printers.GetNewTabWriter(out)
	header := []string{"NAME", "SID", "STATE", "VERSION", "READY", "LAST CHANGE", "NEXT ROTATION"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "SECRET", "BACKEND")
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for i := range items {
		row := statusRow(&items[i], now)
		if withNamespace {
			row = append([]string{items[i].Namespace}, row...)
		}
		if wide {
			row = append(row, orDash(items[i].Status.SecretName), orDash(items[i].Spec.BackendRef.Name))
		}
		fmt.Fprintln(w, strings.Join(row, "\t"))
	}
	return w.Flush()
}

func statusRow(at *tokensv1alpha1.ApiToken, now time.Time) []string {
	st := at.Status
	state := orDash(string(st.State))
	if at.Annotations[tokensv1alpha1.PausedAnnotation] == "true" {
		state += ",Paused"
	}
	version := "-"
	if st.APIVersion != 0 {
		version = fmt.Sprint(st.APIVersion)
	}
	return []string{at.Name, orDash(st.AccountSID), state, version, readyOf(st.Conditions), lastChange(st.History, now), nextRotation(st.NextRotationTime, now)}
}

// readyOf is the Ready condition as status/reason.
func readyOf(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, tokensv1alpha1.ConditionReady)
	if c == nil {
		return "-"
	}
	return string(c.Status) + "/" + c.Reason
}

func lastChange(history []tokensv1alpha1.CredentialChange, now time.Time) string {
	if len(history) == 0 {
		return "-"
	}
	h := history[0]
	return fmt.Sprintf("%s %s ago", h.Type, age(now.Sub(h.Time.Time)))
}

func nextRotation(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	if d := t.Sub(now); d > 0 {
		return "in " + age(d)
	}
	return "due " + age(now.Sub(t.Time)) + " ago"
}

func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
