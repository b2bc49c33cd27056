// Package hydraserver runs a real Ory Hydra (the binary hack/hydra-binary.sh
// builds) for tests, and speaks its token endpoint as a consumer would. It
// imports nothing of this repository, so that pkg/backend/hydra's own tests can
// use it.
package hydraserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is a real Ory Hydra serving its admin API and its public token
// endpoint on loopback.
type Server struct {
	AdminURL, PublicURL, TokenURL string

	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
	keepLog bool
}

// Binary returns the Hydra binary: HYDRA_BINARY when it is set and
// exists, else the cache that hack/hydra-binary.sh fills (building it the first
// time, about 5 minutes). repoRoot is the repository, relative to the test's
// package directory.
func Binary(repoRoot string) (string, error) {
	if b := os.Getenv("HYDRA_BINARY"); b != "" {
		if _, err := os.Stat(b); err == nil {
			return b, nil
		}
	}
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "hydra-binary.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/hydra-binary.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// Start starts Hydra with an in-memory database (dsn "memory") or the
// given one (a sqlite file keeps its clients across restarts), on free loopback
// ports, and waits until both APIs answer.
func Start(binary, dsn string) (*Server, error) {
	return StartWith(binary, dsn, Config{})
}

// Config places a Server. The zero Config is Start's: free ports, and a
// temporary log removed by Stop.
type Config struct {
	// AdminPort and PublicPort are loopback ports to serve on; 0 picks a free one.
	AdminPort, PublicPort int
	// LogPath is a file for Hydra's output that Stop leaves in place; empty: a
	// temporary file.
	LogPath string
}

// StartWith is Start placed by cfg (make dev: the ports its sample
// TokenBackend names, and a log beside the others).
//
// A port picked here was only free a moment before Hydra binds it: another
// process (any outgoing connection takes a port from the same range) can take
// it in between. Hydra then exits with "address already in use", and StartWith
// tries again on fresh ports, a few times, when it picked both; a port the
// caller named is not retried.
func StartWith(binary, dsn string, cfg Config) (*Server, error) {
	const attempts = 5
	picked := cfg.AdminPort == 0 && cfg.PublicPort == 0
	for attempt := 1; ; attempt++ {
		h, err := startOnce(binary, dsn, cfg)
		if err == nil || !picked || !errors.Is(err, errPortTaken) || attempt == attempts {
			return h, err
		}
	}
}

// errPortTaken marks a start that failed because a port was already bound.
var errPortTaken = errors.New("a port was taken before Hydra bound it")

func startOnce(binary, dsn string, cfg Config) (*Server, error) {
	adminPort, publicPort := cfg.AdminPort, cfg.PublicPort
	var err error
	if adminPort == 0 {
		if adminPort, err = pickPort(); err != nil {
			return nil, err
		}
	}
	if publicPort == 0 {
		if publicPort, err = pickPort(); err != nil {
			return nil, err
		}
	}
	h := &Server{
		AdminURL:  "http://127.0.0.1:" + strconv.Itoa(adminPort),
		PublicURL: "http://127.0.0.1:" + strconv.Itoa(publicPort),
		exited:    make(chan struct{}),
		keepLog:   cfg.LogPath != "",
	}
	h.TokenURL = h.PublicURL + "/oauth2/token"
	if h.keepLog {
		h.logFile, err = os.Create(cfg.LogPath)
	} else {
		h.logFile, err = os.CreateTemp("", "hydra-*.log")
	}
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	system := base64.RawURLEncoding.EncodeToString(raw)
	h.cmd = exec.Command(binary, "serve", "all", "--dev", "--sqa-opt-out")
	h.cmd.Env = append(os.Environ(),
		"DSN="+dsn,
		"SECRETS_SYSTEM="+system,
		"SERVE_ADMIN_HOST=127.0.0.1", "SERVE_ADMIN_PORT="+strconv.Itoa(adminPort),
		"SERVE_PUBLIC_HOST=127.0.0.1", "SERVE_PUBLIC_PORT="+strconv.Itoa(publicPort),
		"URLS_SELF_ISSUER="+h.PublicURL+"/",
		"LOG_LEVEL=warn",
	)
	h.cmd.Stdout, h.cmd.Stderr = h.logFile, h.logFile
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	if err := h.waitReady(); err != nil {
		h.Stop()
		return nil, err
	}
	return h, nil
}

func (h *Server) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	// Each probe is bounded: whatever holds a port (another process, when
	// Hydra could not bind it) may accept and never answer.
	probe := &http.Client{Timeout: time.Second}
	for _, u := range []string{h.AdminURL + "/health/ready", h.PublicURL + "/health/ready"} {
		for {
			resp, err := probe.Get(u) //nolint:noctx // a loopback probe bounded by its client's timeout
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-h.exited:
				log := h.Log()
				if strings.Contains(log, "address already in use") {
					return fmt.Errorf("%w: hydra exited:\n%s", errPortTaken, log)
				}
				return fmt.Errorf("hydra exited:\n%s", log)
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("hydra not ready after 30s:\n%s", h.Log())
			}
		}
	}
	return nil
}

// Log is what Hydra wrote so far.
func (h *Server) Log() string {
	out, _ := os.ReadFile(h.logFile.Name())
	return string(out)
}

// Stop stops Hydra (SIGTERM, then SIGKILL after 2 s).
func (h *Server) Stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(2 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
	_ = h.logFile.Close()
	if !h.keepLog {
		_ = os.Remove(h.logFile.Name())
	}
}

// Grant is the answer of the token endpoint to a client-credentials grant.
type Grant struct {
	// Status is the HTTP status: 200 when the client got an access token.
	Status int
	// Error is the OAuth2 error code otherwise (invalid_client, invalid_scope,
	// unauthorized_client).
	Error string
	// AccessToken is the token issued (empty otherwise).
	AccessToken string
}

// ClientCredentials asks tokenURL for an access token as a consumer of the
// Secret would: the client-credentials grant with client_secret_basic (id and
// secret form-encoded first, as RFC 6749 says), for scope (none when empty).
func ClientCredentials(ctx context.Context, tokenURL, clientID, secret, scope string) (Grant, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Grant{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Grant{}, err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return Grant{Status: resp.StatusCode, Error: body.Error, AccessToken: body.AccessToken}, nil
}

// pickPort is how StartWith picks a port: FreePort, or in this package's test
// a port already taken.
var pickPort = FreePort

// FreePort returns a loopback TCP port that was free a moment ago, below
// the kernel's ephemeral range where it can: a port picked there ("port 0")
// is also what any outgoing connection takes as its own, so one can take it
// between FreePort and the process that binds it (CI saw Hydra fail so).
func FreePort() (int, error) {
	if low := ephemeralLow(); low > lowestPicked+1 {
		for range 50 {
			port := lowestPicked + mathrand.IntN(low-lowestPicked)
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err == nil {
				_ = l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lowestPicked is the lowest port FreePort picks: above the well-known and
// most registered services' ports.
const lowestPicked = 20000

// ephemeralLow is the first port of the kernel's ephemeral range, or 0 when
// it cannot be read (not Linux).
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 2 {
		return 0
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return low
}
