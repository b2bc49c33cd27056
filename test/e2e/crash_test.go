package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// TestOperatorKilledMidFlight kills the operator process (SIGKILL) at random
// moments while tokens are created, reset and deleted, restarts it each time, and
// checks that every ApiToken ends with exactly one working backend token, each
// reset nonce reset once, and nothing is left after deletion.
func TestOperatorKilledMidFlight(t *testing.T) {
	const n = 12
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	e := startCluster(t) // it kills the operator
	// Without leader election a restarted process starts at once, so that the
	// kills land while work is in flight.
	restart := func() {
		e.c.KillOperator()
		if err := e.c.StartOperator(e.ctx, "--leader-elect=false"); err != nil {
			t.Fatal(err)
		}
	}
	killRandomly := func(times int) {
		for range times {
			time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
			restart()
		}
	}
	e.defaultBackend()
	e.kubectl("create", "namespace", "crash")

	tokens := make([]string, n)
	for i := range n {
		tokens[i] = apiToken(fmt.Sprintf("t%d", i), `["reports:read"]`, "  deletionPolicy: Delete\n")
	}
	e.applyManifest("crash", manifests(tokens...))
	killRandomly(3)
	e.kubectl("-n", "crash", "wait", "--for=condition=Ready", "apitoken", "--all", framework.KubectlTimeout(2*framework.LongWait))

	admin := e.admin()
	uids := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("t%d", i)
		uids[name] = e.kubectl("-n", "crash", "get", "apitoken", name, "-o", "jsonpath={.metadata.uid}")
		tokens, err := admin.FindByExternalID(e.ctx, uids[name])
		if err != nil || len(tokens) != 1 {
			t.Errorf("%s: %d backend tokens (%v), want exactly 1", name, len(tokens), err)
		}
	}

	// Reset half of them while the operator is killed again.
	for i := 0; i < n; i += 2 {
		e.kubectl("-n", "crash", "annotate", "apitoken", fmt.Sprintf("t%d", i), "tokens.apitoken.dev/reset=kill-test", "--overwrite")
	}
	killRandomly(2)
	for i := 0; i < n; i += 2 {
		e.kubectl("-n", "crash", "wait", "--for=jsonpath={.status.lastHandledReset}=kill-test", fmt.Sprintf("apitoken/t%d", i), framework.KubectlTimeout(2*framework.LongWait))
	}
	for i := range n {
		name := fmt.Sprintf("t%d", i)
		want := int64(1)
		if i%2 == 0 {
			want = 2
		}
		e.eventually(name+" Secret verifies", framework.LongWait, func() error {
			creds := e.secretCredentials("crash", name)
			if code := e.verify(creds, "reports:read"); code != 200 {
				return fmt.Errorf("verify: %d", code)
			}
			current, err := admin.Credentials(e.ctx, creds.AccountSID)
			if err != nil {
				return err
			}
			if current.Generation != want {
				return fmt.Errorf("generation %d, want %d", current.Generation, want)
			}
			return nil
		})
	}

	e.kubectl("-n", "crash", "delete", "apitoken", "--all", "--wait=false")
	killRandomly(2)
	e.eventually("all ApiTokens deleted", 2*framework.LongWait, func() error {
		out, err := e.c.Kubectl(e.ctx, "-n", "crash", "get", "apitoken", "-o", "name")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return errors.New("still there: " + out)
		}
		return nil
	})
	for name, uid := range uids {
		if tokens, err := admin.FindByExternalID(e.ctx, uid); err != nil || len(tokens) != 0 {
			t.Errorf("%s: %d backend tokens left after delete (%v)", name, len(tokens), err)
		}
	}
}
