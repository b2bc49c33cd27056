package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/pkg/conformance"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var binary string

// The admin keys of the tests: the binary refuses keys under 32 bytes.
const (
	binaryKey = "binary-admin-key-0123456789abcdef"
	slowKey   = "slow-admin-key-0123456789abcdef0123"
)

// TestMain builds the binary once: these tests run tokenservice as users do.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenservice-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tokenservice")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build tokenservice: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type process struct {
	cmd      *exec.Cmd
	url      string
	adminKey string
	logs     *framework.SyncBuffer
}

// start runs the binary and waits until it answers.
func start(t *testing.T, scheme string, client *http.Client, env []string, args ...string) *process {
	t.Helper()
	addr := framework.FreeAddr()
	p := &process{url: scheme + "://" + addr, logs: &framework.SyncBuffer{}}
	for _, e := range env {
		if key, ok := strings.CutPrefix(e, "TOKENSERVICE_ADMIN_KEY="); ok {
			p.adminKey = key
		}
	}
	p.cmd = exec.Command(binary, append([]string{"--listen", addr}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	if client == nil {
		client = http.DefaultClient
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(p.url + "/v1/verify") // not a management call: spends no failed authentication
		if err == nil {
			resp.Body.Close()
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("tokenservice did not start:\n%s", p.logs.String())
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tokenservice exited with %v after SIGTERM:\n%s", err, p.logs.String())
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Error("tokenservice did not stop within 10s of SIGTERM")
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBinaryConformance(t *testing.T) {
	keyFile := writeFile(t, "admin-key", binaryKey+"\n")
	data := filepath.Join(t.TempDir(), "tokens.db")
	p := start(t, "http", nil, nil, "--admin-key-file", keyFile, "--data", data)
	p.adminKey = binaryKey
	limited := start(t, "http", nil, []string{"TOKENSERVICE_ADMIN_KEY=" + binaryKey}, "--rate-limit", "2")
	conformance.Run(t, conformance.Target{URL: p.url, AdminKey: binaryKey, RateLimitedURL: limited.url})
	if strings.Contains(p.logs.String(), binaryKey) {
		t.Error("the logs hold the admin key")
	}
}

func TestBinaryKeepsDataAcrossRestart(t *testing.T) {
	env := []string{"TOKENSERVICE_ADMIN_KEY=restart-admin-key-0123456789abcdef"}
	data := filepath.Join(t.TempDir(), "tokens.db")
	p := start(t, "http", nil, env, "--data", data)
	c := p.client(t)
	req := backend.CreateRequest{Name: "durable", PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}, ExternalID: "uid"}
	tok, _, err := c.Create(t.Context(), "create-1", req)
	if err != nil {
		t.Fatal(err)
	}
	reset, err := c.Reset(t.Context(), tok.SID, "reset-1", "")
	if err != nil {
		t.Fatal(err)
	}
	p.stop(t)

	p = start(t, "http", nil, env, "--data", data)
	c = p.client(t)
	creds, err := c.Credentials(t.Context(), tok.SID)
	if err != nil {
		t.Fatal(err)
	}
	if creds.AuthToken.Reveal() != reset.AuthToken.Reveal() || creds.Generation != 2 {
		t.Errorf("credentials after restart: generation %d, token same as the reset: %v", creds.Generation, creds.AuthToken.Reveal() == reset.AuthToken.Reveal())
	}
	replay, err := c.Reset(t.Context(), tok.SID, "reset-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if replay.AuthToken.Reveal() != reset.AuthToken.Reveal() {
		t.Error("a reset replay after restart returned another token")
	}
}

func TestBinaryRefusesToStartWithoutKey(t *testing.T) {
	cmd := exec.Command(binary, "--listen", framework.FreeAddr())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "admin key") {
		t.Fatalf("without a key: err %v, output %q; want a refusal naming the admin key", err, out)
	}
}

// TestBinaryRefusesShortKey: a key under 32 bytes, from the file or the
// environment (white space trimmed), stops the binary with an error that names
// the minimum and never shows the key.
func TestBinaryRefusesShortKey(t *testing.T) {
	const short = "short-admin-key-0123456789abcde" // 31 bytes
	if len(short) != 31 {
		t.Fatalf("the short key is %d bytes", len(short))
	}
	cases := map[string]struct {
		env  []string
		args []string
	}{
		"--admin-key-file":       {args: []string{"--admin-key-file", writeFile(t, "admin-key", short+"\n")}},
		"TOKENSERVICE_ADMIN_KEY": {env: []string{"TOKENSERVICE_ADMIN_KEY= " + short + "\n"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a binary that starts is killed
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, append([]string{"--listen", framework.FreeAddr()}, tc.args...)...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
			out, err := cmd.CombinedOutput()
			if exit, ok := errors.AsType[*exec.ExitError](err); !ok || exit.ExitCode() == 0 {
				t.Fatalf("with a 31-byte key: %v, output %q; want a non-zero exit", err, out)
			}
			if !strings.Contains(string(out), "admin key") || !strings.Contains(string(out), "32 bytes") {
				t.Errorf("output %q; want a refusal naming the admin key and the minimum of 32 bytes", out)
			}
			if strings.Contains(string(out), short) || strings.Contains(string(out), "0123456789") {
				t.Errorf("the output shows the key: %q", out)
			}
		})
	}
}

// TestBinaryLimitsFailedAuthentication: by default (--auth-failure-limit 1, a
// burst of 10) the 11th wrong key in a row from one address is answered 429 with
// Retry-After, the right key too, until a second has passed; with
// --auth-failure-limit 0 every wrong key is answered 401.
func TestBinaryLimitsFailedAuthentication(t *testing.T) {
	env := []string{"TOKENSERVICE_ADMIN_KEY=" + binaryKey}
	get := func(p *process, key string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, p.url+"/v1/tokens", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	p := start(t, "http", nil, env)
	for i := range 10 {
		if resp := get(p, "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	for _, key := range []string{"wrong", binaryKey} {
		resp := get(p, key)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("after 10 wrong keys: %d, Retry-After %q, Content-Type %q; want 429, 1, problem+json",
				resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
		}
	}
	time.Sleep(1100 * time.Millisecond)
	if resp := get(p, binaryKey); resp.StatusCode != http.StatusOK {
		t.Errorf("the admin key after Retry-After: %d, want 200", resp.StatusCode)
	}

	unlimited := start(t, "http", nil, env, "--auth-failure-limit", "0")
	for i := range 30 {
		if resp := get(unlimited, "wrong"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("with --auth-failure-limit 0, wrong key %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
}

func TestBinaryCustomCatalog(t *testing.T) {
	catalog := writeFile(t, "catalog.yaml", `
apiVersions: [1, 2]
latestApiVersion: 2
scopes:
  - {name: "widgets:read", category: widgets, description: Read widgets}
  - {name: "widgets:write", category: widgets, description: Change widgets}
contacts: [{email: owner@example.com, name: Owner}]
`)
	p := start(t, "http", nil, []string{"TOKENSERVICE_ADMIN_KEY=catalog-admin-key-0123456789abcdef"}, "--catalog", catalog)
	got, err := p.client(t).Catalog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.LatestAPIVersion != 2 || len(got.Scopes) != 2 {
		t.Errorf("catalog %+v", got)
	}
	conformance.Run(t, conformance.Target{URL: p.url, AdminKey: "catalog-admin-key-0123456789abcdef"})
}

func TestBinaryServesTLS(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	p := start(t, "https", client, []string{"TOKENSERVICE_ADMIN_KEY=tls-admin-key-0123456789abcdef0123"},
		"--tls-cert-file", writeFile(t, "tls.crt", string(certPEM)), "--tls-key-file", writeFile(t, "tls.key", string(keyPEM)))
	conformance.Run(t, conformance.Target{URL: p.url, AdminKey: "tls-admin-key-0123456789abcdef0123", HTTPClient: client})
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokenservice"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// client is the operator's client of the process under test, with its admin key.
// It makes one attempt per call, so that no retry hides a failed answer.
func (p *process) client(t *testing.T) *backend.Client {
	t.Helper()
	c, err := backend.New(backend.Options{URL: p.url, AdminKey: p.adminKey, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBinaryCutsOffSlowHeaders opens a connection that never finishes its request
// headers: the server must close it after its header timeout (10s), not hold it
// for as long as the client likes, and keep serving everyone else.
func TestBinaryCutsOffSlowHeaders(t *testing.T) {
	p := start(t, "http", nil, []string{"TOKENSERVICE_ADMIN_KEY=" + slowKey})
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	opened := time.Now()
	if _, err := conn.Write([]byte("GET /v1/catalog HTTP/1.1\r\nHost: tokenservice\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.Copy(io.Discard, conn) // returns when the server closes the connection
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the server held a connection with unfinished headers for %v", time.Since(opened).Round(time.Second))
	}
	if held := time.Since(opened); held < 5*time.Second {
		t.Errorf("the connection was closed after %v, before the header timeout", held)
	}
	p.adminKey = slowKey
	if _, err := p.client(t).Catalog(t.Context()); err != nil {
		t.Errorf("after cutting off a slow client the catalog call failed: %v", err)
	}
}
