package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnsureAssets makes KUBEBUILDER_ASSETS name the directory of etcd, kube-apiserver,
// kube-controller-manager and kubectl: the caller's value when set, else the
// cache that hack/k8s-binaries.sh fills (building what is missing). repoRoot is
// the repository, relative to the test's package directory.
func EnsureAssets(repoRoot string) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command(filepath.Join(repoRoot, "hack", "k8s-binaries.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("no KUBEBUILDER_ASSETS and hack/k8s-binaries.sh failed: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	return dir, os.Setenv("KUBEBUILDER_ASSETS", dir)
}
