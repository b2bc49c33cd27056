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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// Scheme knows the core types and the operator's API.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(corev1.AddToScheme(Scheme))
	utilruntime.Must(tokensv1alpha1.AddToScheme(Scheme))
}

// client returns a client for the kubeconfig flags and the namespace they select
// (-n, else the context's namespace, else "default").
func (o *Options) client() (client.Client, string, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

// apiToken returns a client and the ApiToken called name in the namespace the
// flags select: how every command that acts on one ApiToken starts.
func (o *Options) apiToken(ctx context.Context, name string) (client.Client, *tokensv1alpha1.ApiToken, error) {
	c, ns, err := o.client()
	if err != nil {
		return nil, nil, err
	}
	at, err := getApiToken(ctx, c, ns, name)
	if err != nil {
		return nil, nil, err
	}
	return c, at, nil
}

// getApiToken reads one ApiToken with a message that names it when it is missing.
func getApiToken(ctx context.Context, c client.Client, ns, name string) (*tokensv1alpha1.ApiToken, error) {
	at := &tokensv1alpha1.ApiToken{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, at); err != nil {
		return nil, fmt.Errorf("apitoken %s/%s: %w", ns, name, err)
	}
	return at, nil
}

// ref names an ApiToken the way kubectl prints resources.
func ref(name string) string { return "apitoken.tokens.apitoken.dev/" + name }
