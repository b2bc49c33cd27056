package tokenservice_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
)

// BenchmarkTokenService measures the reference server over real HTTP with the
// database on disk, with as many concurrent clients as GOMAXPROCS*8, and reports
// operations per second: creates/s, conditional GETs/s (304) and resets/s.
func BenchmarkTokenService(b *testing.B) {
	ts := newServer(b, tokenservice.Config{DataPath: filepath.Join(b.TempDir(), "bench.db")})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var counter atomic.Int64
	send := func(method, path string, body []byte, headers ...string) *http.Response {
		req, _ := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	create := func() string {
		n := counter.Add(1)
		body := fmt.Appendf(nil, `{"name":"bench","primaryContact":"ops@example.com","scopes":["reports:read"],"externalId":"uid-%d"}`, n)
		resp := send(http.MethodPost, "/v1/tokens", body, "Idempotency-Key", fmt.Sprint("k", n))
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("create: %d", resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	run := func(b *testing.B, metric string, op func()) {
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				op()
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), metric)
	}

	b.Run("Create", func(b *testing.B) { run(b, "creates/s", func() { create() }) })

	path := create()
	etag := send(http.MethodGet, path, nil).Header.Get("ETag")
	b.Run("ConditionalGet", func(b *testing.B) {
		run(b, "gets/s", func() {
			if resp := send(http.MethodGet, path, nil, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
				b.Fatalf("conditional get: %d", resp.StatusCode)
			}
		})
	})
	b.Run("Reset", func(b *testing.B) {
		run(b, "resets/s", func() {
			if resp := send(http.MethodPost, path+"/reset", nil, "Idempotency-Key", fmt.Sprint("r", counter.Add(1))); resp.StatusCode != http.StatusOK {
				b.Fatalf("reset: %d", resp.StatusCode)
			}
		})
	})
}
