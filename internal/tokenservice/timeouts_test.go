package tokenservice

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPServerTimeouts serves HTTPServer with short timeouts, each distinct, and
// checks that each one cuts off the client it is for: headers never finished, a
// body never finished, a keep-alive connection left idle, and a handler slower
// than the write timeout. The client waits 5s itself, so a missing timeout fails.
func TestHTTPServerTimeouts(t *testing.T) {
	s, err := New(Config{AdminKey: rollbackKey})
	if err != nil {
		t.Fatal(err)
	}
	s.timeouts = timeouts{readHeader: 200 * time.Millisecond, read: 1500 * time.Millisecond, write: 500 * time.Millisecond, idle: 300 * time.Millisecond}
	var slow atomic.Bool
	s.store.beforeCommit = func() error {
		if slow.Load() {
			time.Sleep(time.Second)
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); _ = s.Close() })
	url := "http://" + ln.Addr().String()

	const catalog = "GET /v1/catalog HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + rollbackKey + "\r\n\r\n"
	tests := map[string]struct {
		send   string
		within time.Duration // shorter than the other timeouts that could close it
	}{
		"headers never finished": {"GET /v1/catalog HTTP/1.1\r\nHost: x\r\nX-Slow: ", time.Second},
		"body never finished":    {"PATCH /v1/tokens/TKx HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", 4 * time.Second},
		"idle after an answer":   {catalog, time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if held := heldFor(t, ln.Addr().String(), tc.send); held > tc.within {
				t.Errorf("the server held the connection %v, want at most %v", held.Round(time.Millisecond), tc.within)
			}
		})
	}

	t.Run("handler slower than the write timeout", func(t *testing.T) {
		sid := call(t, url, http.MethodPost, "/v1/tokens", tokenBody, "Idempotency-Key", "k").str("sid")
		slow.Store(true)
		defer slow.Store(false)
		req, _ := http.NewRequest(http.MethodPatch, url+"/v1/tokens/"+sid, strings.NewReader(`{"name":"slow"}`))
		req.Header.Set("Authorization", "Bearer "+rollbackKey)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("a patch slower than the write timeout was answered %d, want the connection cut", resp.StatusCode)
		}
	})
}

// heldFor sends a request prefix and returns how long the server kept the
// connection open; it fails the test when the client's own 5s deadline ended it.
func heldFor(t *testing.T, addr, send string) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, send); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(start.Add(5 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the server never closed the connection (%q...)", strings.SplitN(send, "\r\n", 2)[0])
	}
	return time.Since(start)
}
