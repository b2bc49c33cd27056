package tokenservice_test

import (
	"encoding/base64"
	"net/http"
	"testing"

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
