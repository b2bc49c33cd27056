package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binaries are the operator and tokenservice binaries a Cluster runs.
type Binaries struct {
	Manager, TokenService string
}

// BuildBinaries builds the operator and tokenservice into dir with the build
// command of the Dockerfile (CGO_ENABLED=0, -trimpath), so the tests run what
// the image ships; buildFlags go to go build as well (-ldflags, say).
func BuildBinaries(repoRoot, dir string, buildFlags ...string) (Binaries, error) {
	b := Binaries{Manager: filepath.Join(dir, "manager"), TokenService: filepath.Join(dir, "tokenservice")}
	for out, pkg := range map[string]string{b.Manager: ".", b.TokenService: "./cmd/tokenservice"} {
		cmd := exec.Command("go", append(append([]string{"build", "-trimpath"}, buildFlags...), "-o", out, pkg)...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if output, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("build %s: %w\n%s", pkg, err, output)
		}
	}
	return b, nil
}
