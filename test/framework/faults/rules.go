package faults

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
)

// Rules is a Policy that tests extend while the operator runs: each rule injects
// its kind into the next n requests it matches. Requests no rule matches pass.
type Rules struct {
	mu    sync.Mutex
	rules []*Rule
}

// Rule is one rule of Rules; Fired tells a test that its fault really happened.
type Rule struct {
	rules     *Rules
	remaining int
	fired     int
	kind      Kind
	match     func(*http.Request) bool
}

// Fired returns how many requests the rule has injected its fault into.
func (rl *Rule) Fired() int {
	rl.rules.mu.Lock()
	defer rl.rules.mu.Unlock()
	return rl.fired
}

// Add injects kind into the next n requests that match (all requests when match
// is nil).
func (r *Rules) Add(n int, kind Kind, match func(*http.Request) bool) *Rule {
	r.mu.Lock()
	defer r.mu.Unlock()
	rl := &Rule{rules: r, remaining: n, kind: kind, match: match}
	r.rules = append(r.rules, rl)
	return rl
}

// Policy is the Policy of the rules, for Transport.Policy.
func (r *Rules) Policy(req *http.Request) Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range r.rules {
		if rl.remaining > 0 && (rl.match == nil || rl.match(req)) {
			rl.remaining--
			rl.fired++
			return rl.kind
		}
	}
	return None
}

// FirstN injects kind into the first n requests.
func FirstN(n int, kind Kind) Policy {
	r := &Rules{}
	r.Add(n, kind, nil)
	return r.Policy
}

// CreateOf matches the create request (POST /v1/tokens) of the token with that
// name. It reads the body and puts it back for the backend.
func CreateOf(name string) func(*http.Request) bool {
	return func(req *http.Request) bool {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/tokens" || req.Body == nil {
			return false
		}
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
		var create struct {
			Name string `json:"name"`
		}
		return err == nil && json.Unmarshal(body, &create) == nil && create.Name == name
	}
}
