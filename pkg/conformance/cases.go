package conformance

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

func testCatalog(h *harness) {
	c := h.catalog
	if !slices.Contains(c.APIVersions, c.LatestAPIVersion) {
		h.t.Errorf("latestApiVersion %d not in apiVersions %v", c.LatestAPIVersion, c.APIVersions)
	}
	for _, s := range c.Scopes {
		if s.Name == "" || s.Category == "" {
			h.t.Errorf("scope without name or category: %+v", s)
		}
	}
	for _, u := range c.Contacts {
		if u.Email == "" {
			h.t.Errorf("contact without email: %+v", u)
		}
	}
}

func testManagementNeedsAdminKey(h *harness) {
	calls := []struct{ method, path string }{
		{http.MethodGet, "/v1/catalog"},
		{http.MethodPost, "/v1/tokens"},
		{http.MethodGet, "/v1/tokens?externalId=x"},
		{http.MethodGet, "/v1/tokens/TKunknown"},
		{http.MethodPatch, "/v1/tokens/TKunknown"},
		{http.MethodDelete, "/v1/tokens/TKunknown"},
		{http.MethodGet, "/v1/tokens/TKunknown/credentials"},
		{http.MethodPost, "/v1/tokens/TKunknown/reset"},
	}
	// An implementation may limit failed authentications (tokenservice does, per
	// client IP): once some were refused with 401, 429 with Retry-After is a refusal
	// too. The case then waits out the Retry-After, so that the next cases, from
	// the same address, are served.
	refused, wait := 0, 0
	for _, c := range calls {
		for _, auth := range []string{"", "Bearer wrong-" + h.key, "Basic " + h.key} {
			r := h.do(c.method, c.path, []byte("{}"), "Authorization", auth, "Idempotency-Key", "k")
			what := c.method + " " + c.path + " with Authorization " + strconv.Quote(strings.Fields(auth + " none")[0])
			if r.status == http.StatusTooManyRequests && refused > 0 {
				h.expect(r, http.StatusTooManyRequests, what)
				secs, err := strconv.Atoi(r.header.Get("Retry-After"))
				if err != nil || secs < 1 {
					h.t.Fatalf("%s: 429 with Retry-After %q, want whole seconds >= 1", what, r.header.Get("Retry-After"))
				}
				wait = max(wait, secs)
			} else {
				h.expect(r, http.StatusUnauthorized, what)
				refused++
			}
			if bytes.Contains(r.raw, []byte(h.key)) {
				h.t.Errorf("%s %s echoed the admin key", c.method, c.path)
			}
		}
	}
	time.Sleep(time.Duration(wait) * time.Second)
}

func testCreate(h *harness) {
	body := h.newTokenBody()
	r := h.create(body)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		h.t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}
	for _, f := range []string{"sid", "authToken", "createdAt", "updatedAt"} {
		if r.str(f) == "" {
			h.t.Errorf("create response lacks %s: %s", f, r.raw)
		}
	}
	checks := map[string][2]any{
		"name":           {r.str("name"), body["name"]},
		"description":    {r.str("description"), body["description"]},
		"primaryContact": {r.str("primaryContact"), body["primaryContact"]},
		"externalId":     {r.str("externalId"), body["externalId"]},
		"state":          {r.str("state"), "Enabled"},
		"generation":     {r.num("generation"), 1},
	}
	for f, c := range checks {
		if c[0] != c[1] {
			h.t.Errorf("%s = %v, want %v", f, c[0], c[1])
		}
	}
	if got := r.strings("scopes"); !slices.Equal(got, []string{h.scope(0)}) {
		h.t.Errorf("scopes = %v", got)
	}
	if got := r.strings("developerEmails"); !slices.Equal(got, []string{"dev@example.com"}) {
		h.t.Errorf("developerEmails = %v", got)
	}
	if got := h.verify(r.str("sid"), r.str("authToken"), h.scope(0)); got != http.StatusOK {
		h.t.Errorf("verify with the new credentials: %d, want 200", got)
	}
	get := h.do(http.MethodGet, "/v1/tokens/"+r.str("sid"), nil)
	h.expect(get, http.StatusOK, "get")
	if _, ok := get.json["authToken"]; ok {
		h.t.Errorf("GET returned the auth token")
	}
}

func testCreateDefaultsToLatest(h *harness) {
	body := h.newTokenBody()
	r := h.create(body)
	if got := r.num("apiVersion"); got != h.catalog.LatestAPIVersion {
		h.t.Errorf("apiVersion = %d, want latest %d", got, h.catalog.LatestAPIVersion)
	}
	oldest := slices.Min(h.catalog.APIVersions)
	body = h.newTokenBody()
	body["apiVersion"] = oldest
	if got := h.create(body).num("apiVersion"); got != oldest {
		h.t.Errorf("explicit apiVersion = %d, want %d", got, oldest)
	}
}

func testCreateReplay(h *harness) {
	body := h.newTokenBody()
	key := uniqueKey("replay")
	first := h.createWithKey(body, key)
	second := h.do(http.MethodPost, "/v1/tokens", body, "Idempotency-Key", key)
	h.expect(second, http.StatusCreated, "replay")
	for _, f := range []string{"sid", "authToken", "createdAt"} {
		if first.str(f) != second.str(f) {
			h.t.Errorf("replay %s = %q, want %q", f, second.str(f), first.str(f))
		}
	}
	list := h.do(http.MethodGet, "/v1/tokens?externalId="+body["externalId"].(string), nil)
	h.expect(list, http.StatusOK, "list")
	if items, _ := list.json["items"].([]any); len(items) != 1 {
		h.t.Errorf("after a replay, %d tokens carry the external id, want 1", len(items))
	}
}

func testCreateKeyReuse(h *harness) {
	body := h.newTokenBody()
	key := uniqueKey("reuse")
	h.createWithKey(body, key)
	body["name"] = "another name"
	h.expect(h.do(http.MethodPost, "/v1/tokens", body, "Idempotency-Key", key), http.StatusUnprocessableEntity, "same key, other body")
}

func testCreateWithoutKey(h *harness) {
	h.expect(h.do(http.MethodPost, "/v1/tokens", h.newTokenBody()), http.StatusBadRequest, "create without Idempotency-Key")
}

func testCreateMalformed(h *harness) {
	for name, body := range map[string][]byte{
		"not JSON":       []byte("{"),
		"an array":       []byte("[]"),
		"wrong type":     []byte(`{"name": 5}`),
		"unknown member": []byte(`{"name":"x","bogus":true}`),
	} {
		r := h.do(http.MethodPost, "/v1/tokens", body, "Idempotency-Key", uniqueKey("bad"))
		h.expect(r, http.StatusBadRequest, "create with "+name)
	}
}

func testCreateInvalid(h *harness) {
	cases := map[string]struct {
		set   map[string]any
		field string
	}{
		"unknown scope":         {map[string]any{"scopes": []string{"nosuch:scope"}}, "scopes"},
		"unknown contact":       {map[string]any{"primaryContact": "nobody@example.com"}, "primaryContact"},
		"version above latest":  {map[string]any{"apiVersion": h.catalog.LatestAPIVersion + 1}, "apiVersion"},
		"empty name":            {map[string]any{"name": ""}, "name"},
		"name too long":         {map[string]any{"name": strings.Repeat("n", 101)}, "name"},
		"description too long":  {map[string]any{"description": strings.Repeat("d", 1025)}, "description"},
		"malformed e-mail":      {map[string]any{"developerEmails": []string{"not-an-email"}}, "developerEmails"},
		"unknown state":         {map[string]any{"state": "Paused"}, "state"},
		"too many e-mails":      {map[string]any{"developerEmails": manyEmails(51)}, "developerEmails"},
		"missing primary":       {map[string]any{"primaryContact": ""}, "primaryContact"},
		"scope of wrong format": {map[string]any{"scopes": []string{"REPORTS"}}, "scopes"},
	}
	for name, c := range cases {
		body := h.newTokenBody()
		for k, v := range c.set {
			body[k] = v
		}
		r := h.do(http.MethodPost, "/v1/tokens", body, "Idempotency-Key", uniqueKey("invalid"))
		h.expect(r, http.StatusUnprocessableEntity, name)
		if !strings.Contains(string(r.raw), c.field) {
			h.t.Errorf("%s: the problem does not name %q: %s", name, c.field, r.raw)
		}
		list := h.do(http.MethodGet, "/v1/tokens?externalId="+body["externalId"].(string), nil)
		if items, _ := list.json["items"].([]any); len(items) != 0 {
			h.t.Errorf("%s: an invalid create left a token behind", name)
		}
	}
	r := h.do(http.MethodPost, "/v1/tokens", map[string]any{"name": "x", "primaryContact": h.catalog.Contacts[0].Email,
		"scopes": []string{"nosuch:scope"}}, "Idempotency-Key", uniqueKey("invalid"))
	if !strings.Contains(string(r.raw), "nosuch:scope") {
		h.t.Errorf("a 422 for an unknown scope should name it: %s", r.raw)
	}
}

func manyEmails(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "dev" + strconv.Itoa(i) + "@example.com"
	}
	return out
}

func testBodyTooLarge(h *harness) {
	big := []byte(`{"name":"` + strings.Repeat("x", 1<<20) + `"}`)
	h.expect(h.do(http.MethodPost, "/v1/tokens", big, "Idempotency-Key", uniqueKey("big")), http.StatusRequestEntityTooLarge, "create with a 1 MiB body")
	sid := h.create(h.newTokenBody()).str("sid")
	h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, big), http.StatusRequestEntityTooLarge, "patch with a 1 MiB body")
}

func testFindByExternalID(h *harness) {
	body := h.newTokenBody()
	sid := h.create(body).str("sid")
	h.create(h.newTokenBody()) // another external id
	r := h.do(http.MethodGet, "/v1/tokens?externalId="+body["externalId"].(string), nil)
	h.expect(r, http.StatusOK, "list by externalId")
	items, _ := r.json["items"].([]any)
	if len(items) != 1 {
		h.t.Fatalf("found %d tokens, want 1: %s", len(items), r.raw)
	}
	item, _ := items[0].(map[string]any)
	if item["sid"] != sid {
		h.t.Errorf("found %v, want %s", item["sid"], sid)
	}
	if _, ok := item["authToken"]; ok {
		h.t.Errorf("list returned an auth token")
	}
	none := h.do(http.MethodGet, "/v1/tokens?externalId="+uniqueKey("none"), nil)
	h.expect(none, http.StatusOK, "list by unknown externalId")
	if items, ok := none.json["items"].([]any); !ok || len(items) != 0 {
		h.t.Errorf("unknown externalId: items = %s, want []", none.raw)
	}
}

func testGetConditional(h *harness) {
	created := h.create(h.newTokenBody())
	sid := created.str("sid")
	// An ETag on the create (or reset) response is optional; when sent, it is current.
	if etag := created.header.Get("ETag"); etag != "" {
		h.expect(h.do(http.MethodGet, "/v1/tokens/"+sid, nil, "If-None-Match", etag), http.StatusNotModified, "If-None-Match with the create's ETag")
	}
	if reset := h.do(http.MethodPost, "/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", uniqueKey("etag")); reset.header.Get("ETag") != "" {
		h.expect(h.do(http.MethodGet, "/v1/tokens/"+sid, nil, "If-None-Match", reset.header.Get("ETag")), http.StatusNotModified, "If-None-Match with the reset's ETag")
	}
	r := h.do(http.MethodGet, "/v1/tokens/"+sid, nil)
	h.expect(r, http.StatusOK, "get")
	etag := r.header.Get("ETag")
	if etag == "" {
		h.t.Fatal("GET has no ETag")
	}
	notModified := h.do(http.MethodGet, "/v1/tokens/"+sid, nil, "If-None-Match", etag)
	h.expect(notModified, http.StatusNotModified, "If-None-Match with the current ETag")
	if len(notModified.raw) != 0 {
		h.t.Errorf("304 with a body: %s", notModified.raw)
	}
	h.expect(h.do(http.MethodGet, "/v1/tokens/"+sid, nil, "If-None-Match", `"stale"`), http.StatusOK, "If-None-Match with another ETag")
	h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"description": "changed"}), http.StatusOK, "patch")
	after := h.do(http.MethodGet, "/v1/tokens/"+sid, nil, "If-None-Match", etag)
	h.expect(after, http.StatusOK, "If-None-Match after a change")
	if after.header.Get("ETag") == etag {
		h.t.Error("the ETag did not change with the token")
	}
}

func testGetUnknown(h *harness) {
	for _, p := range []string{"/v1/tokens/TKdoesnotexist", "/v1/tokens/TKdoesnotexist/credentials"} {
		h.expect(h.do(http.MethodGet, p, nil), http.StatusNotFound, "GET "+p)
	}
	h.expect(h.do(http.MethodPatch, "/v1/tokens/TKdoesnotexist", map[string]any{"description": "x"}), http.StatusNotFound, "PATCH unknown")
	h.expect(h.do(http.MethodPost, "/v1/tokens/TKdoesnotexist/reset", nil, "Idempotency-Key", uniqueKey("r")), http.StatusNotFound, "reset unknown")
	h.expect(h.do(http.MethodDelete, "/v1/tokens/TKdoesnotexist", nil), http.StatusNotFound, "DELETE unknown")
}

func testPatch(h *harness) {
	sid := h.create(h.newTokenBody()).str("sid")
	etag := h.do(http.MethodGet, "/v1/tokens/"+sid, nil).header.Get("ETag")
	patch := map[string]any{
		"name":            "renamed",
		"description":     nil,
		"developerEmails": []string{"a@example.com", "b@example.com"},
		"scopes":          []string{h.scope(0), h.scope(1)},
		"primaryContact":  h.catalog.Contacts[len(h.catalog.Contacts)-1].Email,
	}
	r := h.do(http.MethodPatch, "/v1/tokens/"+sid, patch, "If-Match", etag, "Content-Type", "application/merge-patch+json")
	h.expect(r, http.StatusOK, "patch")
	if r.str("name") != "renamed" || r.str("description") != "" || len(r.strings("scopes")) != 2 || len(r.strings("developerEmails")) != 2 {
		h.t.Errorf("patch not applied: %s", r.raw)
	}
	if r.header.Get("ETag") == "" || r.header.Get("ETag") == etag {
		h.t.Errorf("patch ETag %q, want a new one (old %q)", r.header.Get("ETag"), etag)
	}
	cleared := h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"scopes": []string{}})
	h.expect(cleared, http.StatusOK, "clear all scopes")
	if len(cleared.strings("scopes")) != 0 {
		h.t.Errorf("scopes not cleared: %s", cleared.raw)
	}
	h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, []byte("not json")), http.StatusBadRequest, "malformed patch")
}

func testPatchStale(h *harness) {
	sid := h.create(h.newTokenBody()).str("sid")
	etag := h.do(http.MethodGet, "/v1/tokens/"+sid, nil).header.Get("ETag")
	h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"description": "first"}, "If-Match", etag), http.StatusOK, "patch with the current ETag")
	h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"description": "second"}, "If-Match", etag), http.StatusPreconditionFailed, "patch with a stale ETag")
	if got := h.do(http.MethodGet, "/v1/tokens/"+sid, nil).str("description"); got != "first" {
		h.t.Errorf("a 412 changed the token: description %q", got)
	}
}

func testPatchDowngrade(h *harness) {
	sid := h.create(h.newTokenBody()).str("sid")
	lower := slices.Min(h.catalog.APIVersions)
	if lower == h.catalog.LatestAPIVersion {
		h.t.Skip("the catalog has a single API version")
	}
	r := h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"apiVersion": lower})
	h.expect(r, http.StatusUnprocessableEntity, "apiVersion downgrade")
	if !strings.Contains(string(r.raw), "apiVersion") {
		h.t.Errorf("the problem does not name apiVersion: %s", r.raw)
	}
	body := h.newTokenBody()
	body["apiVersion"] = lower
	sid = h.create(body).str("sid")
	up := h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"apiVersion": h.catalog.LatestAPIVersion})
	h.expect(up, http.StatusOK, "apiVersion upgrade")
	if up.num("apiVersion") != h.catalog.LatestAPIVersion {
		h.t.Errorf("apiVersion = %d after the upgrade", up.num("apiVersion"))
	}
}

func testPatchUnknown(h *harness) {
	sid := h.create(h.newTokenBody()).str("sid")
	for name, patch := range map[string]map[string]any{
		"unknown scope":   {"scopes": []string{h.scope(0), "nosuch:scope"}},
		"unknown contact": {"primaryContact": "nobody@example.com"},
		"unknown state":   {"state": "Paused"},
		"above latest":    {"apiVersion": h.catalog.LatestAPIVersion + 1},
		"null name":       {"name": nil},
	} {
		h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, patch), http.StatusUnprocessableEntity, name)
	}
	if got := h.do(http.MethodGet, "/v1/tokens/"+sid, nil).strings("scopes"); !slices.Equal(got, []string{h.scope(0)}) {
		h.t.Errorf("a rejected patch changed scopes to %v", got)
	}
}

func testCredentials(h *harness) {
	created := h.create(h.newTokenBody())
	r := h.do(http.MethodGet, "/v1/tokens/"+created.str("sid")+"/credentials", nil)
	h.expect(r, http.StatusOK, "credentials")
	if r.str("accountSid") != created.str("sid") || r.str("authToken") != created.str("authToken") || r.num("generation") != 1 {
		h.t.Errorf("credentials %s do not match the created token", r.raw)
	}
}

func testReset(h *harness) {
	created := h.create(h.newTokenBody())
	sid, old := created.str("sid"), created.str("authToken")
	r := h.do(http.MethodPost, "/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", uniqueKey("reset"))
	h.expect(r, http.StatusOK, "reset")
	if r.str("accountSid") != sid || r.str("authToken") == "" || r.str("authToken") == old || r.num("generation") != 2 {
		h.t.Fatalf("reset response %s", r.raw)
	}
	if got := h.verify(sid, old, h.scope(0)); got != http.StatusUnauthorized {
		h.t.Errorf("old auth token after reset: %d, want 401", got)
	}
	if got := h.verify(sid, r.str("authToken"), h.scope(0)); got != http.StatusOK {
		h.t.Errorf("new auth token after reset: %d, want 200", got)
	}
	creds := h.do(http.MethodGet, "/v1/tokens/"+sid+"/credentials", nil)
	if creds.str("authToken") != r.str("authToken") || creds.num("generation") != 2 {
		h.t.Errorf("credentials after reset: %s", creds.raw)
	}
}

func testResetReplay(h *harness) {
	sid := h.create(h.newTokenBody()).str("sid")
	key := uniqueKey("reset")
	first := h.do(http.MethodPost, "/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", key)
	h.expect(first, http.StatusOK, "reset")
	second := h.do(http.MethodPost, "/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", key)
	h.expect(second, http.StatusOK, "reset replay")
	if first.str("authToken") != second.str("authToken") || second.num("generation") != 2 {
		h.t.Errorf("replay reset again: first %d, replay generation %d", first.num("generation"), second.num("generation"))
	}
	if got := h.verify(sid, first.str("authToken"), h.scope(0)); got != http.StatusOK {
		h.t.Errorf("after a replayed reset the first new token fails: %d", got)
	}
	third := h.do(http.MethodPost, "/v1/tokens/"+sid+"/reset", nil, "Idempotency-Key", uniqueKey("reset"))
	h.expect(third, http.StatusOK, "reset with a new key")
	if third.num("generation") != 3 {
		h.t.Errorf("a new key should reset again: generation %d, want 3", third.num("generation"))
	}
}

func testResetWithoutKey(h *harness) {
	sid := h.create(h.newTokenBody()).str("sid")
	h.expect(h.do(http.MethodPost, "/v1/tokens/"+sid+"/reset", nil), http.StatusBadRequest, "reset without Idempotency-Key")
	if g := h.do(http.MethodGet, "/v1/tokens/"+sid+"/credentials", nil).num("generation"); g != 1 {
		h.t.Errorf("a rejected reset changed generation to %d", g)
	}
}

func testVerifyScopes(h *harness) {
	created := h.create(h.newTokenBody())
	sid, auth := created.str("sid"), created.str("authToken")
	if got := h.verify(sid, auth, h.scope(0)); got != http.StatusOK {
		h.t.Errorf("declared scope: %d, want 200", got)
	}
	if got := h.verify(sid, auth, h.scope(1)); got != http.StatusForbidden {
		h.t.Errorf("undeclared scope: %d, want 403", got)
	}
	req, _ := http.NewRequest(http.MethodGet, h.base+"/v1/verify?scope="+h.scope(0), nil)
	req.SetBasicAuth(sid, auth)
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ok struct {
		SID    string   `json:"sid"`
		Scopes []string `json:"scopes"`
	}
	if err := decodeJSON(resp, &ok); err != nil || ok.SID != sid || !slices.Equal(ok.Scopes, []string{h.scope(0)}) {
		h.t.Errorf("verify body: %+v (%v)", ok, err)
	}
}

func testDisable(h *harness) {
	created := h.create(h.newTokenBody())
	sid, auth := created.str("sid"), created.str("authToken")
	h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"state": "Disabled"}), http.StatusOK, "disable")
	if got := h.verify(sid, auth, h.scope(0)); got != http.StatusUnauthorized {
		h.t.Errorf("disabled token: %d, want 401", got)
	}
	h.expect(h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"state": "Enabled"}), http.StatusOK, "enable")
	if got := h.verify(sid, auth, h.scope(0)); got != http.StatusOK {
		h.t.Errorf("re-enabled token with the same credentials: %d, want 200", got)
	}
}

func testDelete(h *harness) {
	created := h.create(h.newTokenBody())
	sid, auth := created.str("sid"), created.str("authToken")
	h.expect(h.do(http.MethodDelete, "/v1/tokens/"+sid, nil), http.StatusNoContent, "delete")
	if got := h.verify(sid, auth, h.scope(0)); got != http.StatusUnauthorized {
		h.t.Errorf("deleted token: %d, want 401", got)
	}
	h.expect(h.do(http.MethodGet, "/v1/tokens/"+sid, nil), http.StatusNotFound, "get after delete")
	h.expect(h.do(http.MethodDelete, "/v1/tokens/"+sid, nil), http.StatusNotFound, "delete again")
}

func testVerifyBad(h *harness) {
	created := h.create(h.newTokenBody())
	sid := created.str("sid")
	if got := h.verify(sid, "wrong", h.scope(0)); got != http.StatusUnauthorized {
		h.t.Errorf("wrong auth token: %d, want 401", got)
	}
	if got := h.verify("TKunknown", created.str("authToken"), h.scope(0)); got != http.StatusUnauthorized {
		h.t.Errorf("unknown sid: %d, want 401", got)
	}
	r := h.do(http.MethodGet, "/v1/verify?scope="+h.scope(0), nil, "Authorization", "")
	h.expect(r, http.StatusUnauthorized, "verify without credentials")
}

func testRateLimit(h *harness, limitedURL string) {
	if limitedURL == "" {
		h.t.Skip("no RateLimitedURL given")
	}
	limitedURL = strings.TrimSuffix(limitedURL, "/")
	var limited reply
	for range 50 {
		r := h.doURL(limitedURL, http.MethodGet, "/v1/catalog", nil)
		if r.status == http.StatusTooManyRequests {
			limited = r
			break
		}
		h.expect(r, http.StatusOK, "catalog under the limit")
	}
	h.expect(limited, http.StatusTooManyRequests, "50 quick requests")
	secs, err := strconv.Atoi(limited.header.Get("Retry-After"))
	if err != nil || secs < 1 {
		h.t.Fatalf("Retry-After %q, want whole seconds >= 1", limited.header.Get("Retry-After"))
	}
	time.Sleep(time.Duration(secs) * time.Second)
	h.expect(h.doURL(limitedURL, http.MethodGet, "/v1/catalog", nil), http.StatusOK, "after Retry-After")
}
