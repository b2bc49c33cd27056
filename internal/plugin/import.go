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
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/backends"
)

// unclaimedFinder is a backend that can list the tokens no one has claimed:
// every backend type of this repository.
type unclaimedFinder interface {
	FindUnclaimed(ctx context.Context) ([]backend.Token, error)
}

type importOptions struct {
	*Options
	backendName string
	unmanaged   bool
}

func newImportCommand(o *Options) *cobra.Command {
	im := &importOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "import --backend B SID...",
		Short: "Print ApiToken manifests that adopt existing backend tokens exactly as they are",
		Long: `Print ApiToken manifests (YAML) with spec.adopt.accountSid for tokens made by hand, with
every spec field equal to the token as it is in the backend, so that applying them
changes nothing: no reset, the same SID and auth token in the Secret.

Reads the TokenBackend and its admin key Secret with your own RBAC and asks the backend
for each SID. The manifests are for the namespace of -n (or the context's). A token that
another ApiToken already claimed (its externalId is set) is skipped with an error.`,
		Example: `  kubectl apitoken import --backend default -n analytics TK4f0c... TK9a1d... > tokens.yaml
  kubectl apply -f tokens.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return im.run(cmd.Context(), args)
		},
	}
	cmd.Flags().StringVar(&im.backendName, "backend", tokensv1alpha1.DefaultBackendName, "TokenBackend that holds the tokens")
	cmd.Flags().BoolVar(&im.unmanaged, "unmanaged", false, "Import every token that no one has claimed (no externalId) instead of the SIDs given")
	return cmd
}

func (im *importOptions) run(ctx context.Context, sids []string) error {
	if im.unmanaged && len(sids) > 0 {
		return fmt.Errorf("give SIDs or --unmanaged, not both")
	}
	if !im.unmanaged && len(sids) == 0 {
		return fmt.Errorf("no SID given (kubectl apitoken import --backend %s SID [SID...], or --unmanaged)", im.backendName)
	}
	c, ns, err := im.client()
	if err != nil {
		return err
	}
	bc, err := backendClient(ctx, c, im.backendName)
	if err != nil {
		return err
	}
	if im.unmanaged {
		finder, ok := bc.(unclaimedFinder)
		if !ok {
			return fmt.Errorf("tokenbackend %s cannot list unclaimed tokens: give their SIDs", im.backendName)
		}
		unclaimed, err := finder.FindUnclaimed(ctx)
		if err != nil {
			return fmt.Errorf("list the unclaimed tokens of tokenbackend %s: %w", im.backendName, err)
		}
		for _, tok := range unclaimed {
			sids = append(sids, tok.SID)
		}
		if len(sids) == 0 {
			fmt.Fprintf(im.IOStreams.ErrOut, "No unclaimed tokens in tokenbackend %s.\n", im.backendName)
			return nil
		}
	}
	names := map[string]bool{}
	var failed []string
	for _, sid := range sids {
		tok, _, err := bc.Get(ctx, sid, "")
		if err == nil && tok.ExternalID != "" {
			err = fmt.Errorf("already claimed (externalId %s): adopting it would stall with AdoptionConflict", tok.ExternalID)
		}
		if err != nil {
			fmt.Fprintf(im.IOStreams.ErrOut, "error: token %s: %v\n", sid, err)
			failed = append(failed, sid)
			continue
		}
		out, err := yaml.Marshal(Manifest(tok, ns, im.backendName, uniqueName(names, tok)))
		if err != nil {
			return err
		}
		fmt.Fprintf(im.IOStreams.Out, "---\n%s", out)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d tokens not imported: %s", len(failed), len(sids), strings.Join(failed, ", "))
	}
	return nil
}

// backendClient builds the backend of a TokenBackend (of any type) from it and
// its admin key Secret, both read with the caller's credentials.
func backendClient(ctx context.Context, c client.Client, name string) (backend.Backend, error) {
	tb := &tokensv1alpha1.TokenBackend{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, tb); err != nil {
		return nil, fmt.Errorf("tokenbackend %s: %w", name, err)
	}
	o := backend.Options{
		Type: string(tb.Spec.Type), URL: tb.Spec.URL, CABundle: []byte(tb.Spec.CABundle),
		AllowInsecureHTTP: tb.Spec.AllowInsecureHTTP,
	}
	if tb.Spec.Hydra != nil {
		o.TokenURL = tb.Spec.Hydra.TokenURL
	}
	if ref := tb.Spec.CredentialsSecretRef; ref != nil {
		key := ref.Key
		if key == "" {
			key = "apiKey"
		}
		s := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, s); err != nil {
			return nil, fmt.Errorf("admin key of tokenbackend %s: %w", name, err)
		}
		// Surrounding whitespace is never part of a key, as the operator reads it:
		// kubectl create secret --from-file keeps the file's trailing newline.
		o.AdminKey = strings.TrimSpace(string(s.Data[key]))
		if o.AdminKey == "" {
			return nil, fmt.Errorf("admin key of tokenbackend %s: secret %s/%s has no key %q", name, ref.Namespace, ref.Name, key)
		}
	}
	return backends.New(o)
}

// Manifest is the ApiToken that adopts tok without changing it: every field the
// operator keeps in the backend is set to the token's current value. It is a
// plain map so that it carries exactly these fields (no status, no defaults).
func Manifest(tok *backend.Token, namespace, backendName, name string) map[string]any {
	primary, devs := tok.PrimaryContact, tok.DeveloperEmails
	if primary == "" && len(devs) > 0 { // a client made by hand in Hydra: its first contact
		primary, devs = devs[0], devs[1:]
	}
	spec := map[string]any{
		"adopt":          map[string]any{"accountSid": tok.SID},
		"backendRef":     map[string]any{"name": backendName},
		"displayName":    tok.Name,
		"primaryContact": primary,
		"scopes":         nonNil(tok.Scopes),
	}
	if tok.APIVersion > 0 { // a backend without API versions (Hydra) has none
		spec["apiVersion"] = tok.APIVersion
	}
	if tok.Description != "" {
		spec["description"] = tok.Description
	}
	if len(devs) > 0 {
		spec["developerEmails"] = devs
	}
	if tok.State == backend.StateDisabled {
		spec["disabled"] = true
	}
	return map[string]any{
		"apiVersion": tokensv1alpha1.GroupVersion.String(),
		"kind":       "ApiToken",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec":       spec,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

var notName = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName derives a metadata.name from the token's name (a DNS label of at
// most 63 characters), the SID when nothing is left, and a SID suffix when two
// tokens of one import would share it.
func uniqueName(taken map[string]bool, tok *backend.Token) string {
	name := strings.Trim(notName.ReplaceAllString(strings.ToLower(tok.Name), "-"), "-")
	if name == "" {
		name = strings.ToLower(tok.SID)
	}
	name = clipName(name, 63)
	if taken[name] {
		suffix := "-" + strings.ToLower(tok.SID)
		name = clipName(name, 63-min(len(suffix), 62)) + suffix
		name = clipName(name, 63)
	}
	taken[name] = true
	return name
}

func clipName(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.TrimRight(s, "-")
}
