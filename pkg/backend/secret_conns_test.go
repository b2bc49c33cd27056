package backend_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
)

// connCounter counts a test server's connections: opened, and closed.
type connCounter struct {
	mu             sync.Mutex
	opened, closed int
}

func (c *connCounter) track(_ net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch state {
	case http.StateNew:
		c.opened++
	case http.StateClosed:
		c.closed++
	}
}

func (c *connCounter) counts() (opened, closed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened, c.closed
}

// TestSecretHTTPClientReusesThenClosesItsConnections: calls that carry a secret
// in a burst share one connection, instead of a new one each, and once they
// stop the connection is closed within about SecretConnIdle, so that no
// connection idles with a secret in its buffers.
func TestSecretHTTPClientReusesThenClosesItsConnections(t *testing.T) {
	var conns connCounter
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"authToken":"secret"}`)
	}))
	srv.Config.ConnState = conns.track
	srv.Start()
	defer srv.Close()

	hc, err := backend.NewSecretHTTPClient(backend.Options{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	if opened, _ := conns.counts(); opened != 1 {
		t.Fatalf("20 calls in a row opened %d connections, want 1 (reused)", opened)
	}
	deadline := time.Now().Add(backend.SecretConnIdle + 3*time.Second)
	for time.Now().Before(deadline) {
		if _, closed := conns.counts(); closed == 1 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	opened, closed := conns.counts()
	t.Fatalf("%v after the last call: %d connections opened, %d closed; want the idle one closed", backend.SecretConnIdle+3*time.Second, opened, closed)
}
