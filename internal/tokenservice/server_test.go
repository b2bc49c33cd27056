package tokenservice_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
	"github.com/apitoken-dev/apitoken-operator/pkg/conformance"
)

const adminKey = "test-admin-key"

func newServer(t testing.TB, cfg tokenservice.Config) *httptest.Server {
	t.Helper()
	if cfg.AdminKey == "" {
		cfg.AdminKey = adminKey
	}
	srv, err := tokenservice.New(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		_ = srv.Close()
	})
	return ts
}

func TestConformanceInMemory(t *testing.T) {
	ts := newServer(t, tokenservice.Config{})
	limited := newServer(t, tokenservice.Config{RateLimit: 2})
	conformance.Run(t, conformance.Target{URL: ts.URL, AdminKey: adminKey, RateLimitedURL: limited.URL})
}

func TestConformanceOnDisk(t *testing.T) {
	ts := newServer(t, tokenservice.Config{DataPath: filepath.Join(t.TempDir(), "tokens.db")})
	conformance.Run(t, conformance.Target{URL: ts.URL, AdminKey: adminKey})
}

func TestNewRequiresAdminKey(t *testing.T) {
	_, err := tokenservice.New(tokenservice.Config{})
	if err == nil || !strings.Contains(err.Error(), "admin key") {
		t.Fatalf("New without a key: %v, want an error naming the admin key", err)
	}
}

func do(t *testing.T, method, url string, body any, headers ...string) (*http.Response, map[string]any) {
	t.Helper()
	var data []byte
	if body != nil {
		data, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// serveUntilRestart serves the database file path until stop, which closes the
// database, so that a test can open it again as a restarted server would.
func serveUntilRestart(t *testing.T, path string) (url string, stop func()) {
	t.Helper()
	srv, err := tokenservice.New(tokenservice.Config{AdminKey: adminKey, DataPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	return ts.URL, func() {
		ts.Close()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDataSurvivesRestart reopens the database: tokens, credentials and
// idempotency records must all still be there.
func TestDataSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	url, stop := serveUntilRestart(t, path)
	body := map[string]any{"name": "durable", "primaryContact": "ops@example.com", "scopes": []string{"reports:read"}, "externalId": "uid-1"}
	_, created := do(t, http.MethodPost, url+"/v1/tokens", body, "Idempotency-Key", "create-1")
	sid := created["sid"].(string)
	_, reset := do(t, http.MethodPost, url+"/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", "reset-1")
	do(t, http.MethodPatch, url+"/v1/tokens/"+sid, map[string]any{"description": "patched"})
	stop()

	ts := newServer(t, tokenservice.Config{DataPath: path})
	_, got := do(t, http.MethodGet, ts.URL+"/v1/tokens/"+sid, nil)
	if got["description"] != "patched" || got["generation"] != float64(2) {
		t.Errorf("after restart: %v", got)
	}
	_, creds := do(t, http.MethodGet, ts.URL+"/v1/tokens/"+sid+"/credentials", nil)
	if creds["authToken"] != reset["authToken"] {
		t.Error("after restart the credentials differ from the last reset")
	}
	_, replay := do(t, http.MethodPost, ts.URL+"/v1/tokens", body, "Idempotency-Key", "create-1")
	if replay["sid"] != sid || replay["authToken"] != created["authToken"] {
		t.Errorf("create replay after restart returned %v, want the first response", replay["sid"])
	}
	_, replayReset := do(t, http.MethodPost, ts.URL+"/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", "reset-1")
	if replayReset["generation"] != float64(2) {
		t.Errorf("reset replay after restart reset again: generation %v", replayReset["generation"])
	}
	do(t, http.MethodDelete, ts.URL+"/v1/tokens/"+sid, nil)
	ts.Close()
}

func TestDeletedTokenStaysDeletedAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	url, stop := serveUntilRestart(t, path)
	_, created := do(t, http.MethodPost, url+"/v1/tokens", map[string]any{"name": "gone", "primaryContact": "ops@example.com"}, "Idempotency-Key", "k")
	do(t, http.MethodDelete, url+"/v1/tokens/"+created["sid"].(string), nil)
	stop()

	ts := newServer(t, tokenservice.Config{DataPath: path})
	if resp, _ := do(t, http.MethodGet, ts.URL+"/v1/tokens/"+created["sid"].(string), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleted token after restart: %d, want 404", resp.StatusCode)
	}
}

// TestLogsNeverCarrySecrets checks every request log line for the admin key and
// the auth tokens handed out.
func TestLogsNeverCarrySecrets(t *testing.T) {
	var logs bytes.Buffer
	ts := newServer(t, tokenservice.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	_, created := do(t, http.MethodPost, ts.URL+"/v1/tokens", map[string]any{"name": "x", "primaryContact": "ops@example.com"}, "Idempotency-Key", "k")
	sid := created["sid"].(string)
	_, reset := do(t, http.MethodPost, ts.URL+"/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", "r")
	do(t, http.MethodGet, ts.URL+"/v1/tokens/"+sid+"/credentials", nil)
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/verify", nil)
	req.SetBasicAuth(sid, reset["authToken"].(string))
	_, _ = http.DefaultClient.Do(req)

	out := logs.String()
	if strings.Count(out, `"msg":"request"`) != 4 {
		t.Errorf("want 4 request lines, got:\n%s", out)
	}
	for _, secret := range []string{adminKey, created["authToken"].(string), reset["authToken"].(string)} {
		if strings.Contains(out, secret) {
			t.Errorf("a log line holds a secret:\n%s", out)
		}
	}
	for _, field := range []string{`"method"`, `"path"`, `"status"`, `"duration"`} {
		if !strings.Contains(out, field) {
			t.Errorf("request logs lack %s", field)
		}
	}
}

func TestConcurrentReplayIsConflictOrSameResult(t *testing.T) {
	ts := newServer(t, tokenservice.Config{DataPath: filepath.Join(t.TempDir(), "tokens.db")})
	body := map[string]any{"name": "race", "primaryContact": "ops@example.com", "externalId": "race"}
	statuses := make(chan int, 8)
	sids := make(chan string, 8)
	for range 8 {
		go func() {
			resp, out := do(t, http.MethodPost, ts.URL+"/v1/tokens", body, "Idempotency-Key", "same")
			statuses <- resp.StatusCode
			sid, _ := out["sid"].(string)
			sids <- sid
		}()
	}
	seen := map[string]bool{}
	for range 8 {
		status, sid := <-statuses, <-sids
		switch status {
		case http.StatusCreated:
			seen[sid] = true
		case http.StatusConflict:
		default:
			t.Errorf("concurrent create with one key: %d", status)
		}
	}
	if len(seen) != 1 {
		t.Errorf("concurrent creates with one key made %d distinct tokens", len(seen))
	}
	_, list := do(t, http.MethodGet, ts.URL+"/v1/tokens?externalId=race", nil)
	if items := list["items"].([]any); len(items) != 1 {
		t.Errorf("%d tokens carry the external id, want 1", len(items))
	}
}
