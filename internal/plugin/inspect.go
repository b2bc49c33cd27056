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
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// credentialsGenerationAnnotation is where the operator records, on the Secret,
// the generation of the credentials it holds.
const credentialsGenerationAnnotation = "tokens.apitoken.dev/credentials-generation"

type inspectOptions struct {
	*Options
	showToken bool
}

func newInspectCommand(o *Options) *cobra.Command {
	ino := &inspectOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show what an ApiToken's Secret holds (the auth token only with --show-token)",
		Example: `  kubectl apitoken inspect reporting-etl -n analytics
  kubectl apitoken inspect reporting-etl -n analytics --show-token`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ino.run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().BoolVar(&ino.showToken, "show-token", false, "Print the auth token too (it is a credential: mind your terminal and shell history)")
	return cmd
}

func (ino *inspectOptions) run(ctx context.Context, name string) error {
	c, at, err := ino.apiToken(ctx, name)
	if err != nil {
		return err
	}
	ns, secretName := at.Namespace, secretNameOf(at)
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, s); err != nil {
		return fmt.Errorf("secret %s/%s of %s: %w", ns, secretName, ref(name), err)
	}
	sidKey, tokenKey := credentialKeys(at, s.Type)
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rendered := renderedKeys(at)
	token := ino.hidden(s.Data[tokenKey])
	if _, ok := s.Data[tokenKey]; !ok && len(rendered) > 0 {
		token = "(not kept: the rendered keys below hold it)"
	} else if !ok {
		token = fmt.Sprintf("(missing: no key %q)", tokenKey)
	}
	w := printers.GetNewTabWriter(ino.IOStreams.Out)
	fmt.Fprintf(w, "Secret:\t%s/%s\n", ns, s.Name)
	fmt.Fprintf(w, "Type:\t%s\n", s.Type)
	fmt.Fprintf(w, "Keys:\t%s\n", strings.Join(keys, ", "))
	fmt.Fprintf(w, "Account SID:\t%s\t(key %s)\n", orDash(string(s.Data[sidKey])), sidKey)
	fmt.Fprintf(w, "Generation:\t%s\t(annotation %s)\n", orDash(s.Annotations[credentialsGenerationAnnotation]), credentialsGenerationAnnotation)
	fmt.Fprintf(w, "Auth token:\t%s\t(key %s)\n", token, tokenKey)
	for _, k := range rendered {
		value, ok := s.Data[k]
		if !ok {
			fmt.Fprintf(w, "Rendered %s:\t(missing: not rendered yet)\n", k)
			continue
		}
		fmt.Fprintf(w, "Rendered %s:\t%s\t(%d bytes)\n", k, ino.hidden(value), len(value))
	}
	if _, kept := s.Data[sidKey]; kept && at.Status.AccountSID != "" && at.Status.AccountSID != string(s.Data[sidKey]) {
		fmt.Fprintf(w, "Warning:\tthe Secret's SID differs from status.accountSid %s (a change in progress?)\n", at.Status.AccountSID)
	}
	return w.Flush()
}

// hidden is a value that may hold the auth token: shown only with --show-token.
func (ino *inspectOptions) hidden(value []byte) string {
	if ino.showToken {
		return string(value)
	}
	return "(hidden: --show-token prints it)"
}

// renderedKeys are the keys spec.secret.template and spec.secret.formats
// render, sorted.
func renderedKeys(at *tokensv1alpha1.ApiToken) []string {
	var keys []string
	if t := at.Spec.Secret.Template; t != nil {
		for k := range t.Data {
			keys = append(keys, k)
		}
	}
	for _, f := range at.Spec.Secret.Formats {
		keys = append(keys, f.Key())
	}
	slices.Sort(keys)
	return keys
}

// secretNameOf is the Secret the ApiToken writes: status first, then the spec
// and its default.
func secretNameOf(at *tokensv1alpha1.ApiToken) string {
	switch {
	case at.Status.SecretName != "":
		return at.Status.SecretName
	case at.Spec.Secret.Name != "":
		return at.Spec.Secret.Name
	}
	return at.Name
}

// credentialKeys are the data keys of the SID and the auth token in a Secret of
// type t written for at. The Secret's own type counts, not the spec's: while a
// change of spec.secret.type is under way, the Secret still has the old one.
func credentialKeys(at *tokensv1alpha1.ApiToken, t corev1.SecretType) (sid, token string) {
	written := at.Spec.Secret
	written.Type = t
	return written.KeyNames()
}
