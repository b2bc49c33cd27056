// Package conformance is a black-box test suite for the Token Service API v1. Any
// implementation can be checked with it:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Target{URL: "https://tokens.example.com", AdminKey: key})
//	}
//
// or, from this repository, against any URL:
//
//	CONFORMANCE_URL=http://127.0.0.1:8080 CONFORMANCE_ADMIN_KEY=secret go test ./pkg/conformance/
//
// The suite creates tokens with the contacts and scopes of the target's own catalog
// and deletes what it creates. It needs at least one contact and two scopes.
package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Target is the implementation under test.
type Target struct {
	// URL is the base URL, e.g. http://127.0.0.1:8080.
	URL string
	// AdminKey is its admin key.
	AdminKey string
	// HTTPClient is used for every call; nil means http.DefaultClient.
	HTTPClient *http.Client
	// RateLimitedURL, when set, is the same API served with a rate limit of a few
	// requests per second, to check 429 and Retry-After. Empty skips that case.
	RateLimitedURL string
}

// Run runs every case of the suite as a subtest of t.
func Run(t *testing.T, target Target) {
	h := &harness{t: t, base: strings.TrimSuffix(target.URL, "/"), key: target.AdminKey, http: target.HTTPClient}
	if h.http == nil {
		h.http = http.DefaultClient
	}
	h.catalog = h.fetchCatalog()
	cases := []struct {
		name string
		run  func(*harness)
	}{
		{"Catalog", testCatalog},
		{"ManagementNeedsAdminKey", testManagementNeedsAdminKey},
		{"CreateReturnsTokenAndAuthToken", testCreate},
		{"CreateDefaultsToLatestAPIVersion", testCreateDefaultsToLatest},
		{"CreateReplayReturnsSameResult", testCreateReplay},
		{"CreateKeyReuseWithOtherBodyIs422", testCreateKeyReuse},
		{"CreateWithoutIdempotencyKeyIs400", testCreateWithoutKey},
		{"CreateMalformedBodyIs400", testCreateMalformed},
		{"CreateInvalidValuesAre422", testCreateInvalid},
		{"BodyOver1MiBIs413", testBodyTooLarge},
		{"FindByExternalID", testFindByExternalID},
		{"GetWithETagAndIfNoneMatch", testGetConditional},
		{"GetUnknownIs404", testGetUnknown},
		{"PatchMergesAndChangesETag", testPatch},
		{"PatchStaleIfMatchIs412", testPatchStale},
		{"PatchAPIVersionMayOnlyRise", testPatchDowngrade},
		{"PatchUnknownScopeOrContactIs422", testPatchUnknown},
		{"PatchClaimsExternalID", testClaim},
		{"PatchClaimOfClaimedTokenIs409", testClaimTaken},
		{"PatchClaimWithSameValueIsNoOp", testClaimSameValue},
		{"ConcurrentClaimsWithIfMatchHaveOneWinner", testConcurrentClaims},
		{"Credentials", testCredentials},
		{"ResetRevokesOldAuthToken", testReset},
		{"ResetReplayReturnsSameResult", testResetReplay},
		{"ResetWithoutIdempotencyKeyIs400", testResetWithoutKey},
		{"VerifyChecksScopes", testVerifyScopes},
		{"DisableRejectsAtOnceAndEnableRestores", testDisable},
		{"DeleteIsPermanent", testDelete},
		{"VerifyRejectsBadCredentials", testVerifyBad},
		{"RateLimitIs429WithRetryAfter", func(h *harness) { testRateLimit(h, target.RateLimitedURL) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(&harness{t: t, base: h.base, key: h.key, http: h.http, catalog: h.catalog})
		})
	}
}

type catalog struct {
	APIVersions      []int `json:"apiVersions"`
	LatestAPIVersion int   `json:"latestApiVersion"`
	Scopes           []struct {
		Name        string `json:"name"`
		Category    string `json:"category"`
		Description string `json:"description"`
	} `json:"scopes"`
	Contacts []struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	} `json:"contacts"`
}

type harness struct {
	t       *testing.T
	base    string
	key     string
	http    *http.Client
	catalog catalog
}

// reply is a response with its decoded JSON object (nil for no body).
type reply struct {
	status int
	header http.Header
	raw    []byte
	json   map[string]any
}

func (r reply) str(field string) string {
	s, _ := r.json[field].(string)
	return s
}

func (r reply) num(field string) int {
	f, _ := r.json[field].(float64)
	return int(f)
}

func (r reply) strings(field string) []string {
	var out []string
	list, _ := r.json[field].([]any)
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// do sends a request. body may be nil, []byte (sent as is) or a value to encode.
// headers alternate names and values.
func (h *harness) do(method, path string, body any, headers ...string) reply {
	h.t.Helper()
	return h.doURL(h.base, method, path, body, headers...)
}

func (h *harness) doURL(base, method, path string, body any, headers ...string) reply {
	h.t.Helper()
	r, err := h.send(base, method, path, body, headers...)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// send is doURL for any goroutine: it returns what went wrong instead of failing
// the test.
func (h *harness) send(base, method, path string, body any, headers ...string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return reply{}, fmt.Errorf("encode body: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return reply{}, fmt.Errorf("new request: %w", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &r.json)
	}
	return r, nil
}

// expect fails the test unless the reply has the status; for errors it also checks
// the problem+json shape.
func (h *harness) expect(r reply, status int, what string) {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.raw)
	}
	if status >= 400 {
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			h.t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
		}
		if r.str("type") == "" || r.str("title") == "" {
			h.t.Errorf("%s: problem without type or title: %s", what, r.raw)
		}
	}
}

func (h *harness) fetchCatalog() catalog {
	h.t.Helper()
	r := h.do(http.MethodGet, "/v1/catalog", nil)
	h.expect(r, http.StatusOK, "GET /v1/catalog")
	var c catalog
	if err := json.Unmarshal(r.raw, &c); err != nil {
		h.t.Fatalf("decode catalog: %v", err)
	}
	if len(c.Contacts) == 0 || len(c.Scopes) < 2 {
		h.t.Fatalf("the suite needs a catalog with a contact and two scopes, got %s", r.raw)
	}
	return c
}

func (h *harness) scope(i int) string { return h.catalog.Scopes[i].Name }

var keyCounter atomic.Int64

// uniqueKey returns an idempotency key or external id unique to this run.
func uniqueKey(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), keyCounter.Add(1))
}

// newTokenBody is a valid create body with one scope.
func (h *harness) newTokenBody() map[string]any {
	return map[string]any{
		"name":            "conformance",
		"description":     "created by the conformance suite",
		"primaryContact":  h.catalog.Contacts[0].Email,
		"developerEmails": []string{"dev@example.com"},
		"scopes":          []string{h.scope(0)},
		"state":           "Enabled",
		"externalId":      uniqueKey("ext"),
	}
}

// create creates a token, registers its deletion, and returns the create reply.
func (h *harness) create(body map[string]any) reply {
	h.t.Helper()
	return h.createWithKey(body, uniqueKey("create"))
}

// createWithKey is create with a given Idempotency-Key, for the cases that send
// the key again.
func (h *harness) createWithKey(body map[string]any, key string) reply {
	h.t.Helper()
	r := h.do(http.MethodPost, "/v1/tokens", body, "Idempotency-Key", key)
	h.expect(r, http.StatusCreated, "create")
	sid := r.str("sid")
	h.t.Cleanup(func() { h.do(http.MethodDelete, "/v1/tokens/"+sid, nil) })
	return r
}

// verify calls GET /v1/verify with basic credentials and returns the status.
func (h *harness) verify(sid, authToken, scope string) int {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.base+"/v1/verify?scope="+scope, nil)
	req.SetBasicAuth(sid, authToken)
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("verify: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}
