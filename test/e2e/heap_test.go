package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/controllers"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestOperatorHeapHoldsNoAuthToken: the operator keeps no credentials at rest
// (docs/design.md, "Trust boundary": the cache holds no credentials). The
// operator runs in this test's process (tokenservice is its binary, and the test
// reads no Secret before the dump), delivers and resets tokens, and once at rest
// its heap is dumped whole (runtime/debug.WriteHeapDump: every live object's
// bytes); no auth token may be found in it, as is, base64 or URL-encoded.
func TestOperatorHeapHoldsNoAuthToken(t *testing.T) {
	e := startCluster(t) // it stops the operator's binary and runs the operator in this process
	e.c.StopOperator()
	base := framework.ManagerOptions()
	mgr, err := controllers.NewManager(e.c.AdminConfig, base, controllers.Options{CredentialsNamespace: framework.OperatorNamespace})
	if err != nil {
		t.Fatal(err)
	}
	stop := framework.RunManager(mgr)
	defer stop()

	e.defaultBackend()
	e.kubectl("create", "namespace", "heap")
	const n = 20
	for i := range n {
		e.applyManifest("heap", apiToken(fmt.Sprintf("tok-%d", i), "[reports:read]", ""))
	}
	e.kubectl("-n", "heap", "wait", "--for=condition=Ready", "apitoken", "--all", framework.KubectlTimeout(3*framework.LongWait/2))
	for i := range n / 2 {
		e.kubectl("-n", "heap", "annotate", "apitoken", fmt.Sprintf("tok-%d", i), "tokens.apitoken.dev/reset=heap-1")
	}
	e.eventually("every reset handled", framework.LongWait, func() error {
		for i := range n / 2 {
			if got := e.kubectl("-n", "heap", "get", "apitoken", fmt.Sprintf("tok-%d", i), "-o", "jsonpath={.status.lastHandledReset}"); got != "heap-1" {
				return fmt.Errorf("tok-%d: lastHandledReset %q", i, got)
			}
		}
		return nil
	})

	// At rest: no pass running or queued for a while, then the connections that
	// carried Secret writes close a second after the last one
	// (controllers/secret_writer.go); give them twice that.
	idleSince := time.Time{}
	e.eventually("the operator at rest", framework.LongWait, func() error {
		busy, err := operatorBusy()
		switch {
		case err != nil:
			return err
		case busy:
			idleSince = time.Time{}
			return errors.New("passes running or queued")
		case idleSince.IsZero():
			idleSince = time.Now()
		}
		if time.Since(idleSince) < 2*time.Second {
			return errors.New("idle for less than 2 s")
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	dump := filepath.Join(t.TempDir(), "heap.dump")
	f, err := os.Create(dump)
	if err != nil {
		t.Fatal(err)
	}
	// Two collections: the first moves what sync.Pools hold (encoding buffers,
	// reused for any request) to their victim caches, the second frees them.
	runtime.GC()
	runtime.GC()
	debug.WriteHeapDump(f.Fd())
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	heap, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	found, sids := 0, 0
	for i := range n {
		creds := e.secretCredentials("heap", fmt.Sprintf("tok-%d", i))
		token := creds.AuthToken.Reveal()
		if token == "" {
			t.Fatalf("tok-%d: no auth token in its Secret", i)
		}
		for _, form := range framework.SecretForms(token) {
			if at := bytes.Index(heap, []byte(form)); at >= 0 {
				found++
				start := bytes.LastIndex(heap[:at], []byte("k8s\x00"))
				t.Errorf("the auth token of tok-%d is in the operator's heap at rest, after %q", i, heap[max(0, start-32):max(0, start)])
			}
		}
		// The search can fail: the SIDs, which the cache holds, are found.
		if bytes.Contains(heap, []byte(creds.AccountSID)) {
			sids++
		}
	}
	if sids != n {
		t.Errorf("%d of %d SIDs found in the heap dump: the dump does not show the operator's cache", sids, n)
	}
	t.Logf("heap dump of %d KiB searched for %d auth tokens: %d found", len(heap)>>10, n, found)
}

// operatorBusy reports whether the in-process operator's ApiToken controller
// has a pass running or queued (controller-runtime's own metrics).
func operatorBusy() (bool, error) {
	text, err := framework.InProcessMetrics()
	if err != nil {
		return false, err
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		// The priority queue labels its depth by priority: every series counts.
		for _, metric := range []string{`controller_runtime_active_workers{controller="apitoken"`, `workqueue_depth{controller="apitoken",name="apitoken"`} {
			if !strings.HasPrefix(line, metric) {
				continue
			}
			seen[metric] = true
			if _, value, _ := strings.Cut(line, "} "); strings.TrimSpace(value) != "0" {
				return true, nil
			}
		}
	}
	if len(seen) != 2 {
		return false, fmt.Errorf("the operator's work-queue metrics were not found (%d of 2)", len(seen))
	}
	return false, nil
}
