package framework

// This file: kubeconfig files, kubectl, namespaces and grep, for every test
// that drives a control plane the way its users do.

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WriteKubeconfig writes a kubeconfig for cfg's API server: with the bearer
// token when one is given (a ServiceAccount's identity), else with cfg's own
// credentials; namespace, when set, is its context's namespace.
func WriteKubeconfig(path string, cfg *rest.Config, token, namespace string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	user := &clientcmdapi.AuthInfo{Token: token}
	if token == "" {
		user = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	}
	kc.AuthInfos["test"] = user
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test", Namespace: namespace}
	kc.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// Kubectl runs the kubectl of assets with the kubeconfig and stdin, and returns
// its standard output; an error carries its standard error.
func Kubectl(ctx context.Context, assets, kubeconfig, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// KubectlTimeout is kubectl's --timeout flag for d (kubectl wait, delete).
func KubectlTimeout(d time.Duration) string { return "--timeout=" + d.String() }

// CreateNamespace creates a namespace for the test, with the labels, and fails
// the test when it cannot. Namespaces are left behind with the control plane:
// a test's namespace is its own for as long as the control plane runs.
func CreateNamespace(t testing.TB, c client.Client, name string, labels map[string]string) {
	t.Helper()
	if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// GrepLines returns the lines of text that contain needle, for a failure
// message that shows a log's relevant lines only.
func GrepLines(text, needle string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, needle) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
