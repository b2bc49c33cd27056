// Package faults is the one fault injector of every test layer (the backend
// client's tests, the integration suite, the reliability suites and the bench):
// failures between the operator and its backend, and crashes of the operator.
//
// Transport sits in the backend client's HTTP path and can let the backend commit a
// request and then lose its response, answer 5xx or 429 with Retry-After, add
// latency, reset the connection before the request is sent, or refuse connections
// as a backend that is down. Crasher simulates a process crash at a chosen step:
// from that step on, every backend call and Kubernetes write fails, until the
// harness restarts the operator. Policies (Random, FirstN, Rules) decide which
// request gets which fault. It imports pkg/backend and controller-runtime's
// client only, never controllers.
package faults

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Kind is a kind of injected fault.
type Kind string

// The faults a Transport injects.
const (
	None         Kind = ""
	LostResponse Kind = "lost-response" // the backend commits; the caller sees a broken connection
	ServerError  Kind = "5xx"
	TooMany      Kind = "429"
	Latency      Kind = "latency"
	ResetConn    Kind = "connection-reset" // the request never reaches the backend
	Refused      Kind = "connection-refused"
	BadGateway   Kind = "502"
	Invalid      Kind = "422" // a client error: the caller must not retry it
)

// Policy decides the fault for one request. Random, FirstN and Rules build them.
type Policy func(*http.Request) Kind

// Transport injects faults into HTTP requests to a backend and counts them.
type Transport struct {
	Next       http.RoundTripper
	Policy     Policy
	RetryAfter time.Duration // for TooMany; default 1s
	Delay      time.Duration // for Latency; default 200ms

	mu       sync.Mutex
	requests int
	arrivals []time.Time
	injected map[Kind]int
	// limited remembers, per request identity, until when Retry-After forbids a retry.
	limited    map[string]time.Time
	violations []string
}

// ErrInjected marks transport errors that the harness caused.
var ErrInjected = errors.New("injected fault")

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	id := requestID(req)
	now := time.Now()
	kind := None
	if t.Policy != nil {
		kind = t.Policy(req)
	}
	t.mu.Lock()
	if t.injected == nil {
		t.injected = map[Kind]int{}
		t.limited = map[string]time.Time{}
	}
	t.requests++
	t.arrivals = append(t.arrivals, now)
	if until, ok := t.limited[id]; ok && now.Before(until) {
		t.violations = append(t.violations, fmt.Sprintf("%s retried %v before Retry-After expired", id, until.Sub(now)))
	}
	if kind != None {
		t.injected[kind]++
	}
	t.mu.Unlock()

	switch kind {
	case Refused:
		return nil, fmt.Errorf("dial tcp: connect: connection refused (%w)", ErrInjected)
	case ResetConn:
		return nil, fmt.Errorf("read: connection reset by peer (%w)", ErrInjected)
	case ServerError:
		return problemResponse(req, http.StatusServiceUnavailable, nil), nil
	case BadGateway:
		return problemResponse(req, http.StatusBadGateway, nil), nil
	case Invalid:
		return problemResponse(req, http.StatusUnprocessableEntity, nil), nil
	case TooMany:
		after := t.RetryAfter
		if after <= 0 {
			after = time.Second
		}
		t.mu.Lock()
		t.limited[id] = now.Add(after)
		t.mu.Unlock()
		return problemResponse(req, http.StatusTooManyRequests, http.Header{"Retry-After": {strconv.Itoa(int(after.Seconds()))}}), nil
	case Latency:
		d := t.Delay
		if d <= 0 {
			d = 200 * time.Millisecond
		}
		select {
		case <-time.After(d):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	resp, err := t.next().RoundTrip(req)
	if kind == LostResponse && err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("read: connection reset by peer after the backend answered (%w)", ErrInjected)
	}
	return resp, err
}

func (t *Transport) next() http.RoundTripper {
	if t.Next != nil {
		return t.Next
	}
	return http.DefaultTransport
}

// Injected returns how many faults of each kind were injected.
func (t *Transport) Injected() map[Kind]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.injected)
}

// Requests returns how many requests went through the transport.
func (t *Transport) Requests() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.requests
}

// Arrivals returns when each request reached the transport.
func (t *Transport) Arrivals() []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Time(nil), t.arrivals...)
}

// RetryAfterViolations lists requests repeated before their Retry-After expired.
func (t *Transport) RetryAfterViolations() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.violations...)
}

// requestID identifies a request and its retries: method, path, query, and the
// idempotency key where there is one. The query tells lists apart: two
// ApiTokens' lookups (GET /v1/tokens?externalId=...) are two requests, and one
// sent while the other's 429 was on its way back is not a retry
// (make bench-scale once counted one, 0.4 ms after the 429, without it).
func requestID(req *http.Request) string {
	return req.Method + " " + req.URL.Path + "?" + req.URL.RawQuery + " " + req.Header.Get("Idempotency-Key")
}

func problemResponse(req *http.Request, status int, header http.Header) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "application/problem+json")
	body := fmt.Sprintf(`{"type":"https://apitoken.dev/problems/injected","title":"injected %d","status":%d}`, status, status)
	return &http.Response{
		StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Header: header, Body: io.NopCloser(bytes.NewBufferString(body)), Request: req,
		ProtoMajor: 1, ProtoMinor: 1,
	}
}

// Random returns a policy that injects each kind with its probability, using a
// seeded source so that a run can be replayed.
func Random(seed uint64, probabilities map[Kind]float64) Policy {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	kinds := make([]Kind, 0, len(probabilities))
	for k := range probabilities {
		kinds = append(kinds, k)
	}
	sortKinds(kinds)
	return func(*http.Request) Kind {
		mu.Lock()
		defer mu.Unlock()
		x := rng.Float64()
		for _, k := range kinds {
			if x < probabilities[k] {
				return k
			}
			x -= probabilities[k]
		}
		return None
	}
}

func sortKinds(kinds []Kind) {
	for i := 1; i < len(kinds); i++ {
		for j := i; j > 0 && kinds[j] < kinds[j-1]; j-- {
			kinds[j], kinds[j-1] = kinds[j-1], kinds[j]
		}
	}
}
