package bench

// This file: the plain client of the convergence baseline, a process of its
// own as the operator is.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/controllers"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// The baseline's writes are made by a process of their own, this test binary
// started again under the name plainClientCommand: its CPU is read from /proc
// as the operator's is, each process paying its own Go runtime (scheduler,
// garbage collector, connections). Made inside the test process, they shared
// its runtime with the watcher and the creator of the ApiTokens, and their CPU
// was the difference of two samples of the test process, both noisy.
//
// The test process creates each ApiToken in both runs and, in the baseline's,
// hands its name and UID to the plain client over a pipe, where the operator
// learns of it from its watch. The plain client makes the rest of the writes.

// plainClientCommand is the plain client's command name: /proc shows it, and
// clusterCPU counts its CPU under it.
const plainClientCommand = "plain-client"

// plainClientEnv holds, in the plain client's environment, what it connects
// to; its presence makes TestMain run the plain client instead of the tests.
const plainClientEnv = "APITOKEN_BENCH_PLAIN_CLIENT"

// plainClientConfig is what the plain client needs, passed one value a line in
// plainClientEnv.
type plainClientConfig struct {
	operatorKubeconfig, tokenServiceURL, adminKey string
	qps                                           float64
	workers                                       int
}

func (c plainClientConfig) encode() string {
	return strings.Join([]string{c.operatorKubeconfig, c.tokenServiceURL, c.adminKey,
		strconv.FormatFloat(c.qps, 'g', -1, 64), strconv.Itoa(c.workers)}, "\n")
}

func decodePlainClientConfig(s string) (plainClientConfig, error) {
	words := strings.Split(s, "\n")
	if len(words) != 5 {
		return plainClientConfig{}, fmt.Errorf("%s: %d values, want 5", plainClientEnv, len(words))
	}
	qps, err1 := strconv.ParseFloat(words[3], 64)
	workers, err2 := strconv.Atoi(words[4])
	if err := errors.Join(err1, err2); err != nil {
		return plainClientConfig{}, fmt.Errorf("%s: %w", plainClientEnv, err)
	}
	return plainClientConfig{operatorKubeconfig: words[0], tokenServiceURL: words[1], adminKey: words[2], qps: qps, workers: workers}, nil
}

// plainClientProfileEnv, when set, is where the plain client writes its CPU
// profile over its whole life (-profile sets it): the warm-up and every
// baseline run.
const plainClientProfileEnv = "APITOKEN_BENCH_PLAIN_CLIENT_PROFILE"

func TestMain(m *testing.M) {
	if config, ok := os.LookupEnv(plainClientEnv); ok {
		os.Exit(plainClientMain(config))
	}
	os.Exit(m.Run())
}

// plainClientMain runs the plain client and returns its exit code, its CPU
// profile written first when one was asked for.
func plainClientMain(config string) int {
	if path := os.Getenv(plainClientProfileEnv); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := runPlainClient(config, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// runPlainClient reads one ApiToken a line ("namespace name uid") and makes its
// writes, -workers at a time, until its input ends. It writes one line per
// failed token to out.
func runPlainClient(config string, in io.Reader, out io.Writer) error {
	c, err := decodePlainClientConfig(config)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.operatorKubeconfig)
	if err != nil {
		return err
	}
	// The operator's production client settings, as mustClient's.
	cfg.QPS, cfg.Burst = float32(c.qps), burstFor(c.qps)
	cfg.DisableCompression = true
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	// It writes as the operator's ServiceAccount and field manager, so that its
	// objects carry the same managedFields as the operator's.
	operator := client.WithFieldOwner(k8s, controllers.FieldManager)
	be, err := backend.New(backend.Options{URL: c.tokenServiceURL, AdminKey: c.adminKey})
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	// Its input is read as fast as the test process writes it: were the
	// ApiTokens handed over only as fast as the workers take them, the pipe
	// would fill and the test process's creates wait on it, which they do not
	// in the operator's run.
	tokens := make(chan *tokensv1alpha1.ApiToken, 1<<16)
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for at := range tokens {
				ctx, cancel := context.WithTimeout(context.Background(), plainClientTimeout)
				err := plainClientWrites(ctx, at, operator, be)
				cancel()
				if err != nil {
					outMu.Lock()
					fmt.Fprintf(out, "%s/%s: %v\n", at.Namespace, at.Name, err)
					outMu.Unlock()
				}
			}
		})
	}
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		words := strings.Fields(lines.Text())
		if len(words) != 3 {
			close(tokens)
			wg.Wait()
			return fmt.Errorf("plain client: %q is not \"namespace name uid\"", lines.Text())
		}
		at := apiToken(words[0], words[1])
		at.UID, at.Generation = types.UID(words[2]), 1
		tokens <- at
	}
	close(tokens)
	wg.Wait()
	return lines.Err()
}

// plainClientTimeout bounds one ApiToken's writes: a stuck request fails the
// run rather than hanging it.
const plainClientTimeout = time.Minute

// plainClientWrites makes, for one new ApiToken, the least that leaves the same
// objects as the operator: backend create, finalizer patch, the Secret with its
// labels, annotations and owner reference (the garbage collector tracks it),
// and a status of the same shape (conditions, history), so that the API
// server, etcd and the garbage collector do the same work per object in both
// runs.
func plainClientWrites(ctx context.Context, at *tokensv1alpha1.ApiToken, operator client.Client, be *backend.Client) error {
	tok, creds, err := be.Create(ctx, at.Namespace+"/"+string(at.UID), backend.CreateRequest{Name: at.Name, PrimaryContact: "ops@example.com",
		Scopes: []string{"reports:read"}, State: "Enabled", ExternalID: string(at.UID)})
	if err != nil {
		return err
	}
	patch := client.MergeFrom(at.DeepCopy())
	at.Finalizers = []string{tokensv1alpha1.Finalizer}
	if err := operator.Patch(ctx, at, patch); err != nil {
		return err
	}
	if err := operator.Create(ctx, baselineSecret(at, tok.SID, creds)); err != nil {
		return err
	}
	statusPatch := client.MergeFrom(at.DeepCopy())
	setBaselineStatus(at, tok, creds.Generation)
	return operator.Status().Patch(ctx, at, statusPatch)
}

// plainClient is the running plain client process, seen from the test.
type plainClient struct {
	t     *testing.T
	cmd   *exec.Cmd
	mu    sync.Mutex // one line at a time on in
	in    io.WriteCloser
	ended chan struct{}
}

// startPlainClient starts this test binary as the plain client (under
// plainClientCommand, through a link in a temporary directory), stopped when
// the test ends. Its failures fail the test.
func (b *benchRun) startPlainClient() *plainClient {
	t := b.t
	self, err := os.Executable()
	mustDo(t, err)
	link := filepath.Join(t.TempDir(), plainClientCommand)
	mustDo(t, os.Symlink(self, link))
	cmd := exec.Command(link)
	// It dies with the test process, as the cluster's processes do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), plainClientEnv+"="+plainClientConfig{
		operatorKubeconfig: b.c.OperatorKubeconfig, tokenServiceURL: b.c.TokenServiceURL, adminKey: b.c.AdminKey,
		qps: *qpsFlag, workers: *workers,
	}.encode())
	if *profileFlag {
		cmd.Env = append(cmd.Env, plainClientProfileEnv+"="+filepath.Join(filepath.Dir(*outFlag), "bench-plain-client.cpu.pprof"))
	}
	in, err := cmd.StdinPipe()
	mustDo(t, err)
	out, err := cmd.StdoutPipe()
	mustDo(t, err)
	cmd.Stderr = os.Stderr
	mustDo(t, cmd.Start())
	pc := &plainClient{t: t, cmd: cmd, in: in, ended: make(chan struct{})}
	go func() {
		defer close(pc.ended)
		failures := bufio.NewScanner(out)
		for failures.Scan() {
			t.Errorf("plain client: %s", failures.Text())
		}
	}()
	t.Cleanup(pc.stop)
	return pc
}

// write hands one created ApiToken to the plain client; a plain client that
// has exited ends the test at once, rather than after the convergence's
// timeout.
func (pc *plainClient) write(at *tokensv1alpha1.ApiToken) {
	select {
	case <-pc.ended:
		pc.t.Errorf("plain client: exited before %s/%s was handed over", at.Namespace, at.Name)
		return
	default:
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.in == nil {
		pc.t.Errorf("plain client: %s/%s handed over after it stopped", at.Namespace, at.Name)
		return
	}
	if _, err := fmt.Fprintf(pc.in, "%s %s %s\n", at.Namespace, at.Name, at.UID); err != nil {
		pc.t.Errorf("plain client: %v", err)
	}
}

// stop ends its input and waits for it to exit.
func (pc *plainClient) stop() {
	pc.mu.Lock()
	in := pc.in
	pc.in = nil
	pc.mu.Unlock()
	if in == nil {
		return
	}
	_ = in.Close()
	// It ends once its workers are done with what it was handed: each write is
	// bounded by plainClientTimeout, so a client still running after twice that
	// is stuck, and is killed.
	select {
	case <-pc.ended:
	case <-time.After(2 * plainClientTimeout):
		pc.t.Errorf("plain client: still running %v after its input ended; killed", 2*plainClientTimeout)
		_ = pc.cmd.Process.Kill()
		<-pc.ended
	}
	if err := pc.cmd.Wait(); err != nil {
		pc.t.Errorf("plain client: %v", err)
	}
}
