package conformance

import (
	"net/http"
	"strconv"
	"sync"
)

// The claim of an adoption: PATCH may set externalId on a token that has none, and
// only then.

// createUnclaimed creates a token without an external id and returns its SID and
// ETag.
func (h *harness) createUnclaimed() (sid, etag string) {
	h.t.Helper()
	body := h.newTokenBody()
	body["externalId"] = ""
	sid = h.create(body).str("sid")
	get := h.do(http.MethodGet, "/v1/tokens/"+sid, nil)
	h.expect(get, http.StatusOK, "get")
	if get.str("externalId") != "" {
		h.t.Fatalf("a token created without externalId has %q", get.str("externalId"))
	}
	return sid, get.header.Get("ETag")
}

func testClaim(h *harness) {
	sid, etag := h.createUnclaimed()
	uid := uniqueKey("claim")
	r := h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"externalId": uid}, "If-Match", etag)
	h.expect(r, http.StatusOK, "claim")
	if r.str("externalId") != uid {
		h.t.Errorf("claim: externalId %q, want %q", r.str("externalId"), uid)
	}
	if r.header.Get("ETag") == etag {
		h.t.Error("the ETag did not change with the claim")
	}
	list := h.do(http.MethodGet, "/v1/tokens?externalId="+uid, nil)
	if items, _ := list.json["items"].([]any); len(items) != 1 {
		h.t.Errorf("after the claim, %d tokens carry the external id, want 1: %s", len(items), list.raw)
	}
}

func testClaimTaken(h *harness) {
	body := h.newTokenBody()
	uid := body["externalId"].(string)
	sid := h.create(body).str("sid")
	for name, value := range map[string]any{"another id": uniqueKey("other"), "empty": "", "null": nil} {
		r := h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"externalId": value})
		h.expect(r, http.StatusConflict, "claim with "+name+" of a claimed token")
	}
	if got := h.do(http.MethodGet, "/v1/tokens/"+sid, nil).str("externalId"); got != uid {
		h.t.Errorf("a refused claim changed externalId to %q", got)
	}
}

func testClaimSameValue(h *harness) {
	body := h.newTokenBody()
	sid := h.create(body).str("sid")
	etag := h.do(http.MethodGet, "/v1/tokens/"+sid, nil).header.Get("ETag")
	r := h.do(http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"externalId": body["externalId"]}, "If-Match", etag)
	h.expect(r, http.StatusOK, "claim with the id the token has")
	if r.str("externalId") != body["externalId"] {
		h.t.Errorf("externalId %q after a same-value claim", r.str("externalId"))
	}
	if got := r.header.Get("ETag"); got != "" && got != etag {
		h.t.Errorf("a same-value claim changed the ETag from %s to %s: it must change nothing", etag, got)
	}
}

// testConcurrentClaims races claimants with the same If-Match: exactly one wins,
// each other one is refused (412, or 409 when it was checked after the winner).
func testConcurrentClaims(h *harness) {
	const claimants = 8
	sid, etag := h.createUnclaimed()
	type outcome struct {
		uid string
		r   reply
		err error
	}
	results := make([]outcome, claimants)
	var wg sync.WaitGroup
	for i := range results {
		results[i].uid = uniqueKey("claimant-" + strconv.Itoa(i))
		wg.Go(func() {
			o := &results[i]
			o.r, o.err = h.send(h.base, http.MethodPatch, "/v1/tokens/"+sid, map[string]any{"externalId": o.uid}, "If-Match", etag)
		})
	}
	wg.Wait()
	var winner string
	for _, o := range results {
		switch {
		case o.err != nil:
			h.t.Fatal(o.err)
		case o.r.status == http.StatusOK:
			if winner != "" {
				h.t.Errorf("two claims won: %s and %s", winner, o.uid)
			}
			winner = o.uid
		case o.r.status != http.StatusPreconditionFailed && o.r.status != http.StatusConflict:
			h.t.Errorf("a losing claim: status %d, want 412 or 409; body %s", o.r.status, o.r.raw)
		}
	}
	if winner == "" {
		h.t.Fatal("no claim won")
	}
	if got := h.do(http.MethodGet, "/v1/tokens/"+sid, nil).str("externalId"); got != winner {
		h.t.Errorf("externalId %q, want the winner's %q", got, winner)
	}
}
