package tokenservice

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const rollbackKey = "rollback-key"

var errInjected = errors.New("injected: disk full")

// diskServer serves a Server on a database file over real HTTP.
func diskServer(t *testing.T, path string) (*Server, string) {
	t.Helper()
	s, err := New(Config{AdminKey: rollbackKey, DataPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		_ = s.Close()
	})
	return s, ts.URL
}

type answer struct {
	status int
	header http.Header
	json   map[string]any
}

func (a answer) str(field string) string { s, _ := a.json[field].(string); return s }

// call makes one request; it may run on any goroutine. headers alternate names
// and values; "Basic" sends the two values after it as the verify credentials.
func call(t *testing.T, url, method, path, body string, headers ...string) answer {
	req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+rollbackKey)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Basic" {
			req.SetBasicAuth(headers[i+1], headers[i+2])
			break
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return answer{}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.NewDecoder(resp.Body).Decode(&a.json)
	return a
}

const tokenBody = `{"name":"x","primaryContact":"ops@example.com","scopes":["reports:read"],"externalId":"uid-1"}`

// settled reports what a failed write may have left in memory: writes still marked
// in flight, idempotency records in flight.
func (s *store) settled() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.writing) > 0 {
		return errors.New("a token is still marked as being written")
	}
	for k, r := range s.idempotency {
		if r.inFlight {
			return errors.New("idempotency record in flight: " + strings.ReplaceAll(k, "\x00", "/"))
		}
	}
	return nil
}

// TestFailedCommitLeavesNoTrace fails the commit of each write: the request is a 500,
// a GET, the credentials and verify show the state before it, nothing of it is in
// flight or recorded, a retry with the same key acts afresh, and after a restart
// the database agrees with what was answered.
func TestFailedCommitLeavesNoTrace(t *testing.T) {
	tests := map[string]struct {
		method, path, body string // {sid} stands for the token's SID
		key                string
		wantRetry          int
	}{
		"create": {http.MethodPost, "/v1/tokens", strings.Replace(tokenBody, "uid-1", "uid-2", 1), "create-1", http.StatusCreated},
		"reset":  {http.MethodPost, "/v1/tokens/{sid}/reset", "", "reset-1", http.StatusOK},
		"patch":  {http.MethodPatch, "/v1/tokens/{sid}", `{"description":"changed","scopes":[]}`, "", http.StatusOK},
		"delete": {http.MethodDelete, "/v1/tokens/{sid}", "", "", http.StatusNoContent},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.db")
			s, url := diskServer(t, path)
			var failing atomic.Bool
			var injected atomic.Int32
			s.store.beforeCommit = func() error {
				if failing.Load() {
					injected.Add(1)
					return errInjected
				}
				return nil
			}
			created := call(t, url, http.MethodPost, "/v1/tokens", tokenBody, "Idempotency-Key", "seed")
			sid, auth := created.str("sid"), created.str("authToken")
			before := call(t, url, http.MethodGet, "/v1/tokens/"+sid, "")
			target := strings.ReplaceAll(tc.path, "{sid}", sid)

			failing.Store(true)
			failed := call(t, url, tc.method, target, tc.body, "Idempotency-Key", tc.key)
			failing.Store(false)
			if injected.Load() != 1 {
				t.Fatalf("the commit failure fired %d times, want 1", injected.Load())
			}
			if failed.status != http.StatusInternalServerError || failed.header.Get("ETag") != "" || failed.header.Get("Location") != "" {
				t.Fatalf("failed commit: %d, ETag %q, Location %q; want a bare 500", failed.status, failed.header.Get("ETag"), failed.header.Get("Location"))
			}
			if err := s.store.settled(); err != nil {
				t.Error(err)
			}
			checkUnchanged(t, url, sid, auth, before)

			retry := call(t, url, tc.method, target, tc.body, "Idempotency-Key", tc.key)
			if retry.status != tc.wantRetry {
				t.Fatalf("retry with the same key: %d, want %d (acting afresh)", retry.status, tc.wantRetry)
			}
			want := call(t, url, http.MethodGet, "/v1/tokens?externalId=", "")
			_ = s.Close()
			_, url = diskServer(t, path)
			if got := call(t, url, http.MethodGet, "/v1/tokens?externalId=", ""); !jsonEqual(got.json, want.json) {
				t.Errorf("after a restart the tokens are\n%v\nwant what was answered:\n%v", got.json, want.json)
			}
		})
	}
}

// checkUnchanged fails unless the token sid is as before a failed write.
func checkUnchanged(t *testing.T, url, sid, auth string, before answer) {
	t.Helper()
	get := call(t, url, http.MethodGet, "/v1/tokens/"+sid, "")
	if get.status != http.StatusOK || get.header.Get("ETag") != before.header.Get("ETag") || !jsonEqual(get.json, before.json) {
		t.Errorf("after a failed commit GET shows %d %v (ETag %s), want the token as before (ETag %s)", get.status, get.json, get.header.Get("ETag"), before.header.Get("ETag"))
	}
	if creds := call(t, url, http.MethodGet, "/v1/tokens/"+sid+"/credentials", ""); creds.str("authToken") != auth {
		t.Error("after a failed commit the credentials changed")
	}
	if v := call(t, url, http.MethodGet, "/v1/verify?scope=reports:read", "", "Basic", sid, auth); v.status != http.StatusOK {
		t.Errorf("after a failed commit verify with the old credentials: %d, want 200", v.status)
	}
	if list := call(t, url, http.MethodGet, "/v1/tokens?externalId=uid-2", ""); len(list.json["items"].([]any)) != 0 {
		t.Error("a failed create left a token that its external id finds")
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// inFlight holds the next commit until release says how it ends.
type inFlight struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan error
}

// holdCommits installs the hold; a test that stops early lets the held commit go,
// so that the server can close.
func holdCommits(t *testing.T, s *Server) *inFlight {
	h := &inFlight{entered: make(chan struct{}, 1), release: make(chan error)}
	t.Cleanup(func() { close(h.release) })
	s.store.beforeCommit = func() error {
		if !h.armed.CompareAndSwap(true, false) {
			return nil
		}
		h.entered <- struct{}{}
		return <-h.release
	}
	return h
}

// TestInFlightWriteIsInvisible holds a reset's commit, then fails it. Meanwhile
// readers see the committed token (read committed: nothing they saw is taken back)
// and a patch of the token waits; afterwards the patch applies to the committed
// token, not the failed reset. A create's key is in flight (409) only until its
// commit fails; then the same key acts afresh.
func TestInFlightWriteIsInvisible(t *testing.T) {
	s, url := diskServer(t, filepath.Join(t.TempDir(), "tokens.db"))
	hold := holdCommits(t, s)
	created := call(t, url, http.MethodPost, "/v1/tokens", tokenBody, "Idempotency-Key", "seed")
	sid, auth := created.str("sid"), created.str("authToken")
	before := call(t, url, http.MethodGet, "/v1/tokens/"+sid, "")

	hold.armed.Store(true)
	reset := make(chan answer)
	go func() {
		reset <- call(t, url, http.MethodPost, "/v1/tokens/"+sid+"/reset", "", "Idempotency-Key", "r1")
	}()
	<-hold.entered
	checkUnchanged(t, url, sid, auth, before)
	patch := make(chan answer)
	go func() { patch <- call(t, url, http.MethodPatch, "/v1/tokens/"+sid, `{"description":"after"}`) }()
	select {
	case p := <-patch:
		t.Fatalf("a patch went ahead of an uncommitted reset of the token: %d", p.status)
	case <-time.After(200 * time.Millisecond):
	}
	hold.release <- errInjected
	if r := <-reset; r.status != http.StatusInternalServerError {
		t.Fatalf("reset with a failed commit: %d, want 500", r.status)
	}
	if p := <-patch; p.status != http.StatusOK || p.json["generation"] != float64(1) || p.json["description"] != "after" {
		t.Errorf("the waiting patch: %d %v, want 200 on generation 1", p.status, p.json)
	}
	if creds := call(t, url, http.MethodGet, "/v1/tokens/"+sid+"/credentials", ""); creds.str("authToken") != auth {
		t.Error("the failed reset changed the auth token")
	}
	if r := call(t, url, http.MethodPost, "/v1/tokens/"+sid+"/reset", "", "Idempotency-Key", "r1"); r.json["generation"] != float64(2) {
		t.Errorf("reset retried with the same key: %v, want generation 2", r.json)
	}

	hold.armed.Store(true)
	body := strings.Replace(tokenBody, "uid-1", "uid-3", 1)
	create := make(chan answer)
	go func() { create <- call(t, url, http.MethodPost, "/v1/tokens", body, "Idempotency-Key", "c1") }()
	<-hold.entered
	if c := call(t, url, http.MethodPost, "/v1/tokens", body, "Idempotency-Key", "c1"); c.status != http.StatusConflict {
		t.Errorf("create with a key in flight: %d, want 409", c.status)
	}
	hold.release <- errInjected
	if c := <-create; c.status != http.StatusInternalServerError {
		t.Fatalf("create with a failed commit: %d, want 500", c.status)
	}
	if c := call(t, url, http.MethodPost, "/v1/tokens", body, "Idempotency-Key", "c1"); c.status != http.StatusCreated {
		t.Errorf("create retried after the failed commit: %d, want 201", c.status)
	}
	if list := call(t, url, http.MethodGet, "/v1/tokens?externalId=uid-3", ""); len(list.json["items"].([]any)) != 1 {
		t.Errorf("%d tokens carry the external id, want 1", len(list.json["items"].([]any)))
	}
}

// TestClosedDatabaseFailsWritesCleanly makes bolt itself fail (the database is
// closed under the server): every write is a 500 that changes nothing, and a
// repeat of a create with the same key tries again instead of answering 409.
func TestClosedDatabaseFailsWritesCleanly(t *testing.T) {
	s, url := diskServer(t, filepath.Join(t.TempDir(), "tokens.db"))
	created := call(t, url, http.MethodPost, "/v1/tokens", tokenBody, "Idempotency-Key", "seed")
	sid, auth := created.str("sid"), created.str("authToken")
	before := call(t, url, http.MethodGet, "/v1/tokens/"+sid, "")
	if err := s.store.db.Close(); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(tokenBody, "uid-1", "uid-2", 1)
	for _, c := range []struct{ method, path, body, key string }{
		{http.MethodPatch, "/v1/tokens/" + sid, `{"state":"Disabled"}`, ""},
		{http.MethodPost, "/v1/tokens/" + sid + "/reset", "", "r"},
		{http.MethodDelete, "/v1/tokens/" + sid, "", ""},
		{http.MethodPost, "/v1/tokens", body, "c"},
		{http.MethodPost, "/v1/tokens", body, "c"},
	} {
		if got := call(t, url, c.method, c.path, c.body, "Idempotency-Key", c.key); got.status != http.StatusInternalServerError {
			t.Errorf("%s %s with the database closed: %d, want 500", c.method, c.path, got.status)
		}
	}
	if err := s.store.settled(); err != nil {
		t.Error(err)
	}
	checkUnchanged(t, url, sid, auth, before)
}
