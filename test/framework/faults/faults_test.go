package faults

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// A request repeated within the Retry-After of its 429 is a violation; a
// request with another query (another token's lookup) is not one.
func TestRetryAfterViolationsTellRequestsApart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	first := true
	tr := &Transport{Policy: func(*http.Request) Kind {
		if first {
			first = false
			return TooMany
		}
		return None
	}}
	get := func(query string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/tokens?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	get("externalId=a") // 429, Retry-After: 1
	get("externalId=b")
	if v := tr.RetryAfterViolations(); len(v) != 0 {
		t.Fatalf("another token's lookup counted as a retry: %v", v)
	}
	get("externalId=a")
	if v := tr.RetryAfterViolations(); len(v) != 1 {
		t.Fatalf("the same lookup repeated at once: violations %v, want one", v)
	}
}
