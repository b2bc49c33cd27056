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
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

var (
	// k8s is a cluster-admin client of the test control plane.
	k8s client.WithWatch
	// kubeconfig is a kubeconfig file for it; its context's namespace is "default".
	kubeconfig string
	// testNow is the plugin's clock in every test.
	testNow = time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	cp, err := framework.StartControlPlane("../..", Scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cp.Stop()
	k8s = cp.Client
	dir, err := os.MkdirTemp("", "kubectl-apitoken-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := framework.WriteKubeconfig(kubeconfig, cp.Config, "", "default"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// result is what one plugin run printed.
type result struct {
	out, errOut string
	err         error
}

// run runs the plugin with args against the test control plane.
func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	o := &Options{
		IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		Version:   "v0.0.0-test",
		Now:       func() time.Time { return testNow },
	}
	err := Execute(o, append([]string{"--kubeconfig", kubeconfig}, args...))
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// createNamespace makes a namespace for one test.
func createNamespace(t *testing.T, name string) {
	t.Helper()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

// createApiToken creates an ApiToken and then writes status through the status
// subresource, as the operator would.
func createApiToken(t *testing.T, ns, name string, annotations map[string]string, status tokensv1alpha1.ApiTokenStatus) *tokensv1alpha1.ApiToken {
	t.Helper()
	ctx := context.Background()
	at := &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec:       tokensv1alpha1.ApiTokenSpec{PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}},
	}
	if err := k8s.Create(ctx, at); err != nil {
		t.Fatal(err)
	}
	if status.AccountSID != "" || len(status.Conditions) > 0 {
		at.Status = status
		if err := k8s.Status().Update(ctx, at); err != nil {
			t.Fatal(err)
		}
	}
	return at
}

// ready is a Ready condition.
func ready(status metav1.ConditionStatus, reason string) []metav1.Condition {
	return []metav1.Condition{{
		Type: tokensv1alpha1.ConditionReady, Status: status, Reason: reason, Message: "test",
		LastTransitionTime: metav1.NewTime(testNow.Add(-time.Hour)),
	}}
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (-update rewrites it)\n--- got:\n%s--- want:\n%s", path, got, want)
	}
}
