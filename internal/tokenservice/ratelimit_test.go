package tokenservice_test

import (
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/internal/tokenservice"
)

func basic(sid, authToken string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(sid+":"+authToken))
}

// TestRateLimitIsPerClientAfterAuthentication floods a server limited to 5 requests
// per second with wrong admin keys and wrong verify credentials: the flood is
// answered 401 and, once over its own budget, 429, while the admin key and the
// token's SID keep their whole budgets. Each client is still limited.
func TestRateLimitIsPerClientAfterAuthentication(t *testing.T) {
	ts := newServer(t, tokenservice.Config{RateLimit: 5})
	_, created := do(t, http.MethodPost, ts.URL+"/v1/tokens", map[string]any{"name": "x", "primaryContact": "ops@example.com", "scopes": []string{"reports:read"}}, "Idempotency-Key", "k")
	sid, auth := created["sid"].(string), created["authToken"].(string)

	floods := map[string][]string{
		"wrong admin key":    {http.MethodGet, "/v1/catalog", "Bearer wrong"},
		"no credentials":     {http.MethodGet, "/v1/tokens", ""},
		"wrong auth token":   {http.MethodGet, "/v1/verify?scope=reports:read", basic(sid, "wrong")},
		"unknown account":    {http.MethodGet, "/v1/verify", basic("TKunknown", auth)},
		"unknown endpoint":   {http.MethodGet, "/v1/nothing", ""},
		"wrong key on reset": {http.MethodPost, "/v1/tokens/" + sid + "/reset", "Bearer wrong"},
	}
	statuses := map[int]int{}
	for range 20 {
		for _, f := range floods {
			resp, _ := do(t, f[0], ts.URL+f[1], nil, "Authorization", f[2], "Idempotency-Key", "flood")
			statuses[resp.StatusCode]++
		}
	}
	if statuses[http.StatusUnauthorized]+statuses[http.StatusNotFound] == 0 || statuses[http.StatusTooManyRequests] == 0 || len(statuses) > 3 {
		t.Errorf("the unauthenticated flood was answered %v, want 401s (404s) and, once over its budget, 429s", statuses)
	}

	for i := range 4 { // the create spent one of the admin key's 5
		if resp, _ := do(t, http.MethodGet, ts.URL+"/v1/tokens/"+sid, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("admin call %d after the flood: %d, want 200", i+1, resp.StatusCode)
		}
	}
	for i := range 5 {
		if resp, _ := do(t, http.MethodGet, ts.URL+"/v1/verify?scope=reports:read", nil, "Authorization", basic(sid, auth)); resp.StatusCode != http.StatusOK {
			t.Fatalf("verify %d with good credentials after the flood: %d, want 200", i+1, resp.StatusCode)
		}
	}

	for who, auth := range map[string]string{"admin key": "Bearer " + adminKey, "account": basic(sid, auth)} {
		path := "/v1/catalog"
		if who == "account" {
			path = "/v1/verify"
		}
		var limited *http.Response
		for range 20 {
			if resp, _ := do(t, http.MethodGet, ts.URL+path, nil, "Authorization", auth); resp.StatusCode == http.StatusTooManyRequests {
				limited = resp
				break
			}
		}
		if limited == nil || limited.Header.Get("Retry-After") == "" {
			t.Errorf("the %s was never limited, or without Retry-After, in 20 quick calls", who)
		}
	}
}

// serveFrom sends one request to srv from the client address ip (port 1234).
func serveFrom(srv http.Handler, ip, method, path, authorization string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = net.JoinHostPort(ip, "1234")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

// TestAuthFailuresAreLimitedPerIP: management calls with a missing or wrong admin
// key spend their IP's burst of AuthFailureBurst failures; then the IP is answered
// 429 with Retry-After, as problem+json, without its key being checked (the right
// key too, so that a guess is never confirmed), until the bucket refills. Calls
// with the right key spend nothing, and other IPs keep their own budget.
func TestAuthFailuresAreLimitedPerIP(t *testing.T) {
	srv, err := tokenservice.New(tokenservice.Config{AdminKey: adminKey, AuthFailureLimit: tokenservice.DefaultAuthFailureLimit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	const attacker, operator = "192.0.2.1", "192.0.2.2"
	good := "Bearer " + adminKey

	// Successful calls are never counted: many of them, then the whole burst of failures.
	for i := range 3 * tokenservice.AuthFailureBurst {
		if rec := serveFrom(srv, attacker, http.MethodGet, "/v1/catalog", good); rec.Code != http.StatusOK {
			t.Fatalf("call %d with the admin key: %d, want 200", i+1, rec.Code)
		}
	}
	for i := range tokenservice.AuthFailureBurst {
		auth := "Bearer wrong"
		if i%2 == 1 {
			auth = "" // a missing key counts as a failure too
		}
		if rec := serveFrom(srv, attacker, http.MethodPost, "/v1/tokens/TKx/reset", auth); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d of the burst: %d, want 401", i+1, rec.Code)
		}
	}
	for _, auth := range []string{"Bearer wrong", "", good} {
		rec := serveFrom(srv, attacker, http.MethodGet, "/v1/tokens", auth)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" ||
			rec.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(rec.Body.String(), tokenservice.ProblemRateLimited) {
			t.Errorf("after the burst, Authorization %q: %d, Retry-After %q, %s; want 429, Retry-After 1, a rate-limited problem",
				strings.Fields(auth + " none")[0], rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
	if rec := serveFrom(srv, operator, http.MethodGet, "/v1/catalog", good); rec.Code != http.StatusOK {
		t.Errorf("another IP with the admin key while the first is limited: %d, want 200", rec.Code)
	}
	if rec := serveFrom(srv, operator, http.MethodGet, "/v1/catalog", "Bearer wrong"); rec.Code != http.StatusUnauthorized {
		t.Errorf("another IP's first failure: %d, want 401", rec.Code)
	}
	if rec := serveFrom(srv, attacker, http.MethodGet, "/v1/verify", basic("TKx", "wrong")); rec.Code != http.StatusUnauthorized {
		t.Errorf("verify is not a management call, from the limited IP: %d, want 401", rec.Code)
	}

	time.Sleep(1100 * time.Millisecond) // one failure per second: one back
	if rec := serveFrom(srv, attacker, http.MethodGet, "/v1/catalog", good); rec.Code != http.StatusOK {
		t.Errorf("the admin key once the bucket refilled: %d, want 200", rec.Code)
	}
	if rec := serveFrom(srv, attacker, http.MethodGet, "/v1/catalog", "Bearer wrong"); rec.Code != http.StatusUnauthorized {
		t.Errorf("a failure once the bucket refilled: %d, want 401", rec.Code)
	}
	if rec := serveFrom(srv, attacker, http.MethodGet, "/v1/catalog", "Bearer wrong"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("the next failure: %d, want 429", rec.Code)
	}
}

// TestAuthFailureLimitOff: with AuthFailureLimit 0 (the zero Config, as the tests'
// in-process servers), failures are answered 401 however many.
func TestAuthFailureLimitOff(t *testing.T) {
	srv, err := tokenservice.New(tokenservice.Config{AdminKey: adminKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	for i := range 5 * tokenservice.AuthFailureBurst {
		if rec := serveFrom(srv, "192.0.2.1", http.MethodGet, "/v1/catalog", "Bearer wrong"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d without a limit: %d, want 401", i+1, rec.Code)
		}
	}
}
