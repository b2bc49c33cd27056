package framework

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apitoken-dev/apitoken-operator/test/framework/hydraserver"
)

// Process is a child process whose output goes to a log file.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess starts a binary with extra environment, logging to logPath.
func StartProcess(logPath string, env []string, binary string, args ...string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: a test binary that is killed (a timeout) takes its children with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(binary), err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Stop sends SIGTERM and waits up to 15s before killing.
func (p *Process) Stop() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.Kill()
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cancelOnExit is ctx, cancelled with cause when the process exits.
func (p *Process) cancelOnExit(ctx context.Context, cause string) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-p.done:
			cancel(errors.New(cause))
		case <-ctx.Done():
		}
	}()
	return ctx
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago (hydraserver.FreePort: below the ephemeral range, where no outgoing
// connection takes it in between).
func FreeAddr() string {
	port, err := hydraserver.FreePort()
	if err != nil {
		panic(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// waitHTTP waits until url answers below 500: a process that listens and is ready.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout) // also bounds a request that hangs
	defer cancel()
	err := Poll(timeout, func() error {
		if ctx.Err() != nil {
			return nil // the caller gave up, or the time is up: stop polling, and say so below
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err == nil {
		err = context.Cause(ctx) // the time is up, or why the caller gave up
	}
	if err != nil {
		return fmt.Errorf("%s did not answer within %v: %w", url, timeout, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Tail is the last lines of a process's log, for a failed test to show.
func Tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
